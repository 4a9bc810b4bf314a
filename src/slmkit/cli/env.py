"""`SLM_*` environment variables, checked once when `slm` starts: a bad value is one line naming
the variable; one slmkit does not know (a typo, a removed setting) is warned about."""

from __future__ import annotations

import os
import re

from pydantic import BaseModel, ValidationError

from slmkit.errors import InvalidRequest

OTHER_VARIABLES = frozenset({"SLM_HOME", "SLM_API_KEY", "SLM_LOG_LEVEL", "SLM_URL", "SLM_MODEL"})
OTHER_PREFIXES = ("SLM_TEST_", "SLM_CI_")  # the test suite's and the CI example's own


def known_variables() -> set[str]:
    from slmkit.settings import Settings

    names = set(OTHER_VARIABLES)
    for section, field in Settings.model_fields.items():
        names.add(f"SLM_{section.upper()}")
        model = field.annotation
        if isinstance(model, type) and issubclass(model, BaseModel):
            names.update(f"SLM_{section.upper()}__{key.upper()}" for key in model.model_fields)
    return names


def unknown_variables(environ: dict[str, str] | None = None) -> list[str]:
    environ = dict(os.environ) if environ is None else environ
    known = known_variables()
    return sorted(name for name in environ if name.startswith("SLM_") and name not in known
                  and not name.startswith(OTHER_PREFIXES))


def check_settings() -> None:
    """Load the settings once; a bad value raises InvalidRequest naming its variable."""
    from pydantic_settings import SettingsError

    from slmkit.settings import load_settings

    try:
        load_settings()
    except ValidationError as exc:
        error = exc.errors()[0]
        variable = "SLM_" + "__".join(str(part).upper() for part in error["loc"])
        value = os.environ.get(variable)
        shown = f"={value!r}" if value is not None else ""
        raise InvalidRequest(f"environment variable {variable}{shown}: {error['msg']}") from None
    except SettingsError as exc:  # a value that must be JSON (a list) is not
        match = re.search(r'field "(\w+)"', str(exc))
        prefix = f"SLM_{match.group(1).upper()}__" if match else "SLM_"
        names = ", ".join(sorted(n for n in os.environ if n.startswith(prefix))) or prefix + "*"
        raise InvalidRequest(f"cannot read {names}: list settings take JSON, such as "
                             "SLM_SERVER__MODELS='[\"a\", \"b\"]'") from None
