"""`python -m services.capture`."""

from services.capture.app import main

raise SystemExit(main())
