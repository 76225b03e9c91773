"""The page's password gate: Streamlit's documented pattern for a password without SSO.

Until the right password has been entered in this browser session the page shows the
password field only: nothing is read from the database before. The password is compared in
constant time (access.password_matches) and removed from the session state once checked;
what stays is whether it was right. A new session (a reload, another tab) asks again.
"""

from __future__ import annotations

import logging

import streamlit as st

from services.dashboard.access import password_matches
from services.dashboard.settings import DashboardSettings

log = logging.getLogger(__name__)

_FIELD = "password"
_PASSED = "password_correct"


def unlocked(settings: DashboardSettings) -> bool:
    """True when the page may be drawn; otherwise the password form is drawn instead."""
    if settings.password is None or st.session_state.get(_PASSED, False):
        return True
    expected = settings.password.get_secret_value()

    def entered() -> None:
        given = str(st.session_state.get(_FIELD, ""))
        del st.session_state[_FIELD]  # do not keep the password in the session
        ok = password_matches(given, expected)
        st.session_state[_PASSED] = ok
        if not ok:
            log.warning("dashboard: wrong password entered")

    st.text_input("Password", type="password", key=_FIELD, on_change=entered)
    if _PASSED in st.session_state:
        st.error("Wrong password.")
    return False
