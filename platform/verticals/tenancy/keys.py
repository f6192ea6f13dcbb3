"""API key secrets: `vk_<mode>_` + 40 random base62 characters + a 6-character CRC32.

The fixed prefix and the checksum let secret scanners recognise a leaked key (and reject
a typo) without calling us; only a SHA-256 of the whole key is stored. The secrets are
~238 bits of entropy, so a fast hash is safe here where a password would need a slow one.
"""

import hashlib
import re
import secrets
import zlib
from dataclasses import dataclass

from verticals.tenancy.ids import ALPHABET

RANDOM_LENGTH = 40
CHECKSUM_LENGTH = 6
LOOKUP_LENGTH = 12
KEY_PATTERN = re.compile(
    rf"^vk_(live|test)_([0-9A-Za-z]{{{RANDOM_LENGTH}}})([0-9A-Za-z]{{{CHECKSUM_LENGTH}}})$"
)


def _base62(number: int, width: int) -> str:
    digits = []
    while number:
        number, remainder = divmod(number, 62)
        digits.append(ALPHABET[remainder])
    return "".join(reversed(digits)).rjust(width, ALPHABET[0])


def checksum(random_part: str) -> str:
    return _base62(zlib.crc32(random_part.encode()), CHECKSUM_LENGTH)


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass(frozen=True)
class ParsedKey:
    mode: str
    lookup: str
    secret: str


def generate_secret(mode: str) -> ParsedKey:
    random_part = "".join(secrets.choice(ALPHABET) for _ in range(RANDOM_LENGTH))
    secret = f"vk_{mode}_{random_part}{checksum(random_part)}"
    return ParsedKey(mode=mode, lookup=random_part[:LOOKUP_LENGTH], secret=secret)


def parse_secret(secret: str) -> ParsedKey | None:
    """The key's parts, or None when it is not a well-formed key with a valid checksum."""
    match = KEY_PATTERN.match(secret)
    if not match or checksum(match.group(2)) != match.group(3):
        return None
    return ParsedKey(mode=match.group(1), lookup=match.group(2)[:LOOKUP_LENGTH], secret=secret)
