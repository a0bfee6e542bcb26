from gridlens.cli import main

raise SystemExit(main())
