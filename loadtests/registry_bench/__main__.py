"""`python -m loadtests.registry_bench`: see the package's docstring."""

from loadtests.registry_bench.run import main

raise SystemExit(main())
