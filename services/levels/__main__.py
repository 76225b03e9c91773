from services.levels.app import main

raise SystemExit(main())
