"""Every table, imported in one place so metadata (and Alembic) sees them all."""

from bot.assessments import models as assessments_models  # noqa: F401
from bot.checkins import models as checkins_models  # noqa: F401
from bot.core import models as core_models  # noqa: F401
from bot.enrolment import models as enrolment_models  # noqa: F401
from bot.escalation import models as escalation_models  # noqa: F401
from bot.platform import models as platform_models  # noqa: F401
from bot.privacy import models as privacy_models  # noqa: F401
from bot.recovery import models as recovery_models  # noqa: F401
from bot.safety import models as safety_models  # noqa: F401
