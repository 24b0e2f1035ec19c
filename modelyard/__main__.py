from modelyard.cli.main import main

raise SystemExit(main())
