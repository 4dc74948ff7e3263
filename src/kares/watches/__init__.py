"""Watches: a kids' or elders' watch introduces itself, is paired with a family's
dependant by a guardian, reports as that person's device, and is unpaired."""
