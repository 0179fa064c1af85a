"""The lapse flow: what a patient reads after saying they used (DESIGN §2.2, §2.5).

Non-shaming and practical: a lapse is not a relapse; what happened, what helped before, and the
next right step (a meeting today, calling someone, the counselor). Used by the check-in and by
free text that discloses use: `text, rows = lapse_message(lang, patient)`; rows are
(label, callback_data) buttons handled by the /sos area (`sos:*`, `pl:*`).
"""

from __future__ import annotations

from typing import Any

from bot.content import Content, get_content

Button = tuple[str, str]


def lapse_message(
    lang: str = "en",
    patient: Any | None = None,
    *,
    content: Content | None = None,
    meetings: bool = False,
) -> tuple[str, list[list[Button]]]:
    """The lapse message and its buttons. `patient` (a PatientInfo) personalises the greeting."""
    c = content or get_content()
    name = getattr(patient, "first_name", None) or ""
    greeting = c.t("lapse.greeting_named", lang, name=name) if name else c.t("lapse.greeting", lang)
    text = "\n\n".join(
        [
            greeting,
            c.t("lapse.not_a_relapse", lang),
            c.t("lapse.what_happened", lang),
            c.t("lapse.next_step", lang),
        ]
    )
    rows: list[list[Button]] = [
        [(c.t("lapse.button.note", lang), "pl:add:triggers")],
        [(c.t("lapse.button.helped", lang), "sos:helped")],
        [(c.t("lapse.button.call", lang), "sos:call")],
    ]
    if meetings:
        rows.append([(c.t("lapse.button.meeting", lang), "sos:meet")])
    rows.append([(c.t("lapse.button.talk", lang), "sos:talk")])
    rows.append([(c.t("lapse.button.tools", lang), "sos:menu")])
    return text, rows
