"""The privacy core. Step 2 grows it into the catalog, consent ledger and guard."""
