"""Print a personal access token for a Label Studio user, created from the command line (no browser).

Run with Label Studio's own Python, against the same data directory as the server:
    LABEL_STUDIO_BASE_DATA_DIR=DIR .venv-label-studio/bin/python infra/label-studio/personal_token.py USER_EMAIL
The token is what LABEL_STUDIO_API_KEY takes (a JWT refresh token: docflow exchanges it for access tokens)."""

from __future__ import annotations

import os
import sys
from pathlib import Path


def main() -> None:
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    import label_studio

    sys.path.insert(0, str(Path(label_studio.__file__).parent))  # Label Studio's apps import as top-level modules
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "core.settings.label_studio")
    import django

    django.setup()
    from jwt_auth.models import LSAPIToken  # type: ignore[import-not-found]
    from users.models import User  # type: ignore[import-not-found]

    user = User.objects.filter(email=sys.argv[1]).first()
    if user is None:
        sys.exit(f"no Label Studio user {sys.argv[1]!r} (start the server once with LABEL_STUDIO_USERNAME set)")
    print(LSAPIToken.for_user(user).get_full_jwt())


if __name__ == "__main__":
    main()
