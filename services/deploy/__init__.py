"""Deployment tooling: first-run set-up (`soundscape init`), device provisioning
(`soundscape device ...`) and the broker files they write (password file, ACL, bridge)."""
