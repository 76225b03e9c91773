"""`python -m services.simulate`."""

from services.simulate.app import main

raise SystemExit(main())
