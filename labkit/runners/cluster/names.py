"""Kubernetes names, labels and user directories: validated with full-string matches.

Every check uses :func:`re.fullmatch`, so a trailing newline (which ``$`` lets through) is
refused. :func:`kubespawner_slug` gives the directory name KubeSpawner (zero-to-jupyterhub)
uses for ``{username}``, so a Job writes where the user's server looks.
"""

from __future__ import annotations

import hashlib
import re

from labkit.params import check_run_id  # noqa: F401 (the one run-id check, re-exported)
from labkit.runners.cluster.errors import SettingsError

_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_LABEL_VALUE = re.compile(r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?")
_USER_DIR = re.compile(r"[A-Za-z0-9_@][-A-Za-z0-9_.@]*")


def short_hash(text: str, n: int = 6) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:n]


def is_dns_label(name: str) -> bool:
    """A DNS-1123 label (names of Jobs, namespaces): ``[a-z0-9-]``, at most 63 characters."""
    return len(name) <= 63 and _DNS_LABEL.fullmatch(name) is not None


def is_label_value(value: str) -> bool:
    """A Kubernetes label value: empty, or alphanumerics with ``-_.`` inside, at most 63 characters."""
    return len(value) <= 63 and _LABEL_VALUE.fullmatch(value) is not None


def sanitize_name(text: str, max_len: int = 63) -> str:
    """A DNS-1123 label from any text (a sweep id): lowercase ``[a-z0-9-]``, at most ``max_len``.

    Not for identities: it keeps an already clean name, so it is not injective over user
    names (``alice-b-lab-org-00e968`` is also what ``alice.b@lab.org`` becomes); use
    :func:`kubespawner_slug` for anything derived from a user.

    If anything had to change (case, characters, length) a short hash of the original
    is appended, so ``Anna.B`` and ``anna-b`` never collide.
    """
    clean = re.sub(r"[^a-z0-9-]+", "-", text.lower())
    clean = re.sub(r"-+", "-", clean).strip("-")
    if clean == text and 0 < len(clean) <= max_len:
        return clean
    suffix = short_hash(text)
    room = max_len - len(suffix) - 1
    base = clean[:room].strip("-") or "x"
    return f"{base}-{suffix}"


def fit_slug(slug: str, user: str, max_len: int) -> str:
    """``slug`` (a :func:`kubespawner_slug`) cut to ``max_len``: a cut one ends in ``---`` and a hash of ``user``.

    Clean slugs never contain ``--``, so a cut slug can only meet another hashed one (a
    collision of the hash), never a user's own clean name.
    """
    if len(slug) <= max_len:
        return slug
    digest = short_hash(user, 8)
    return f"{slug[:max(1, max_len - len(digest) - 3)].rstrip('-') or 'x'}---{digest}"


def user_dir(user: str) -> str:
    """The raw user name as one directory component; refuses anything that could leave the export."""
    if _USER_DIR.fullmatch(user) is None or ".." in user:
        raise SettingsError(f"The user name {user!r} cannot name a directory on the NFS server "
                            "(letters, digits, '.', '_', '@' and '-' only)")
    return user


def kubespawner_slug(name: str) -> str:
    """KubeSpawner's ``{username}``: the name if it is a safe object name, else a stripped name and a hash.

    Injective (up to the hash): a name it keeps never contains ``--``, and a name it escapes
    always carries ``---`` and a hash of the exact name, so ``alice.b@lab.org`` and the
    clean name ``alice-b-lab-org-00e968`` never share a slug. labkit's owner label, Job
    names and ``{user}`` namespaces and claims are all this slug (:func:`fit_slug` where a
    name has less room).

    The scheme of ``kubespawner.slugs.safe_slug`` (KubeSpawner 7, z2jh 4), written here
    because kubespawner cannot be installed beside labkit everywhere; tests pin it to
    KubeSpawner's own examples (``alice.b@lab.org`` is ``alice-b-lab-org---00e968cd``).
    """
    valid = (0 < len(name) <= 63 and "--" not in name and re.fullmatch(r"[a-z][a-z0-9-]*", name) is not None
             and name[-1] != "-")
    if valid:
        return name
    digest = hashlib.sha256(name.encode("utf8")).hexdigest()[:8]
    room = 32 - len(digest) - 3
    stem = re.sub(r"[^a-z0-9]+", "-", name.lower()).lstrip("-")[:room].rstrip("-")
    if stem and not stem[0].isalpha():
        stem = "x-" + stem[:room - 2]
    return f"{stem or 'x'}---{digest}"


def store_slug(user: str) -> str:
    """A user's part of the artifact store for ``{username}``: injective over hub names, exactly.

    A name KubeSpawner keeps is itself; any other name is its readable stem, ``---`` and the
    hexadecimal of its UTF-8 bytes (which decodes back to the name). Clean names never contain
    ``--``, so the two kinds never meet, and two escaped names share a slug only if they are
    the same name. KubeSpawner's own slug ends in an 8-digit hash, which names can be found to
    share: fine for a directory KubeSpawner made, not for whose objects a service hands out.
    """
    slug = kubespawner_slug(user)
    if slug == user:
        return slug
    return f"{slug.rsplit('---', 1)[0]}---{user.encode('utf8').hex()}"


def store_prefix(template: str, user: str) -> str:
    """``store.prefix`` for ``user``: ``{username}`` is :func:`store_slug`, ``{user}`` the raw name (checked);
    a template naming no user is refused, since every user would share it."""
    if "{username}" not in template and "{user}" not in template:
        raise SettingsError(f"store.prefix {template!r} names no user: every user would share it; put "
                            "{username} in it (e.g. labkit/{username})")
    out = template.replace("{username}", store_slug(user))
    return out.replace("{user}", user_dir(user)) if "{user}" in out else out  # user_dir refuses some names
