"""`python -m services.inference`: same as `soundscape inference`."""

from services.inference.app import main

raise SystemExit(main())
