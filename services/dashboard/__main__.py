from services.dashboard.app import main

raise SystemExit(main())
