"""The areas of the bot, in order: the one place an area is added (README, "Adding an area").

Each area is a package `bot/<area>/` (its models, services, scheduled work and rules) with an
`area.py` whose `install(hub)` registers what the area runs on the hub (sweeper kinds, life-cycle
hooks, start-up tasks, hooks on sent messages), plus its Telegram side in `handlers/` and the
validators of its part of `content/`. The composition root (bot/app.py) installs them in this
order, then registers their handlers in this order; `iop-bot content check` runs every check.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial

import handlers.checkins
import handlers.enrolment
import handlers.flags
import handlers.free_text
import handlers.invites
import handlers.privacy
import handlers.safety
import handlers.sos
import handlers.staff
from bot.assessments import buttons as assessments_buttons
from bot.assessments import rules as assessments_rules
from bot.checkins import area as checkins_area
from bot.checkins import buttons as checkins_buttons
from bot.checkins import lapse
from bot.checkins import rules as checkins_rules
from bot.core import rules_loader
from bot.core.hub import Hub
from bot.enrolment import buttons as enrolment_buttons
from bot.enrolment import onboarding
from bot.escalation import area as escalation_area
from bot.escalation import buttons as escalation_buttons
from bot.escalation import rules as escalation_rules
from bot.platform.callbacks import Buttons
from bot.platform.content import Checker
from bot.privacy import area as privacy_area
from bot.privacy import buttons as privacy_buttons
from bot.recovery import area as recovery_area
from bot.recovery import buttons as recovery_buttons
from bot.recovery import library
from bot.recovery import rules as recovery_rules
from bot.safety import area as safety_area
from bot.safety import buttons as safety_buttons
from bot.safety import crisis, free_text
from bot.safety import service as safety
from bot.safety.risk import registry as risk_registry
from handlers import Register


@dataclass(frozen=True)
class Area:
    name: str
    # What the area runs on the hub (bot/<area>/area.py); None when it only answers updates.
    install: Callable[[Hub], None] | None = None
    # Its Telegram side: each adds handlers and typed-text kinds (handlers/<module>.py).
    handlers: tuple[Register, ...] = ()
    # Validators of its part of content/, by name.
    checks: Mapping[str, Checker] = field(default_factory=dict)
    # Its buttons' callback data, one family per prefix (bot/<area>/buttons.py).
    buttons: tuple[Buttons, ...] = ()


AREAS: tuple[Area, ...] = (
    # Onboarding, /start and settings; cohorts and invites (bot/enrolment/invites.py).
    Area("enrolment", handlers=(handlers.enrolment.register, handlers.invites.register),
         checks={"bot.enrolment.onboarding": onboarding.check_content},
         buttons=(enrolment_buttons.ONBOARDING.family, enrolment_buttons.SETTINGS.family, enrolment_buttons.INVITES)),
    Area("safety", safety_area.install, (handlers.safety.register,),
         {"bot.safety.risk": risk_registry.check_content, "bot.safety.crisis": crisis.check_content,
          "bot.safety.service": safety.check_content, "bot.safety.free_text": free_text.check_content},
         (safety_buttons.SAFETY,)),
    # Check-ins and assessments share one handler module (handlers/checkins.py).
    Area("checkins", checkins_area.install, (handlers.checkins.register,),
         {"bot.checkins.lapse": lapse.check_content, "bot.checkins.rules": checkins_rules.check_content,
          "bot.assessments.rules": assessments_rules.check_content},
         (checkins_buttons.CHECKIN, assessments_buttons.ASSESSMENT)),
    Area("escalation", escalation_area.install, (handlers.flags.register,),
         {"bot.escalation.rules": escalation_rules.check_content}, (escalation_buttons.FLAG,)),
    Area("privacy", privacy_area.install, (handlers.privacy.register,), buttons=(privacy_buttons.PRIVACY,)),
    Area("recovery", recovery_area.install, (handlers.sos.register,),
         {"bot.recovery.rules": recovery_rules.check_sos_rules, "bot.recovery.library": library.check_library},
         (recovery_buttons.SOS, recovery_buttons.PLAN)),
    # Staff administration: roles are the kernel's (bot/core/staff.py); its commands are here.
    Area("staff", handlers=(handlers.staff.register,)),
    # Typed text no conversation took: the router's default, after every area's kinds.
    Area("free text", handlers=(handlers.free_text.register,)),
)

# The kernel checks the instruments every area asks; the areas whose rules raise flags name where
# their flag rules are, so that an id is unique across their files.
FLAG_RULES: tuple[rules_loader.RuleIds, ...] = (assessments_rules.rule_ids, checkins_rules.rule_ids)
CORE_CHECKS: Mapping[str, Checker] = {
    "bot.core.rules_loader": rules_loader.check_content,
    "bot.core.rules_loader.rule_ids": partial(rules_loader.check_rule_ids, parts=FLAG_RULES),
}


def content_checks() -> dict[str, Checker]:
    """Every validator of content/, by name."""
    out = dict(CORE_CHECKS)
    for area in AREAS:
        out.update(area.checks)
    return out


def button_families() -> list[Buttons]:
    """Every family of buttons the bot makes, one per prefix."""
    return [family for area in AREAS for family in area.buttons]


def install(hub: Hub) -> list[Register]:
    """Install every area on the hub, in order; their handlers' registrations, in order."""
    for area in AREAS:
        if area.install is not None:
            area.install(hub)
    return [register for area in AREAS for register in area.handlers]
