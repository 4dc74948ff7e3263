from kares.cli import main

raise SystemExit(main())
