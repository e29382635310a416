"""Kafka's ``ssl.principal.mapping.rules``: a client certificate's subject -> the principal's name.

The subject is written as RFC 2253 does (most specific first, ``CN=alice,OU=eng,O=acme``),
as Java's ``X500Principal.getName()`` does, so rules written for Kafka keep
working. Rules are tried in order; the first whose pattern matches the whole
subject gives ``replacement`` (``$1`` ... refer to groups), lower-cased with
``/L`` or upper-cased with ``/U``. ``DEFAULT`` keeps the subject as it is. A
subject no rule matches is refused (Kafka does the same).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

# Kafka's own rule grammar (SslPrincipalMapper.RULE_PARSER), '\/' escapes a slash
_RULE = re.compile(r"((DEFAULT)|RULE:((\\/|[^/])*)/((\\/|[^/])*)/([LU]?).*?|(.*?))(,\s*|$)")
_SHORT = {
    "commonName": "CN", "organizationalUnitName": "OU", "organizationName": "O", "countryName": "C",
    "localityName": "L", "stateOrProvinceName": "ST", "streetAddress": "STREET", "domainComponent": "DC",
    "userId": "UID", "emailAddress": "EMAILADDRESS",
}


class MappingError(ValueError):
    """The rules do not parse, or no rule matches a subject."""


@dataclass(frozen=True, slots=True)
class Rule:
    pattern: re.Pattern[str] | None  # None: DEFAULT
    replacement: str = ""
    case: str = ""

    def apply(self, subject: str) -> str | None:
        if self.pattern is None:
            return subject
        if self.pattern.fullmatch(subject) is None:
            return None
        out = self.pattern.sub(self.replacement, subject)
        return out.lower() if self.case == "L" else out.upper() if self.case == "U" else out


def parse_rules(text: str) -> list[Rule]:
    rules: list[Rule] = []
    text = text.strip()
    pos = 0
    while pos < len(text):
        m = _RULE.match(text, pos)
        if m is None or m.end() == pos:
            raise MappingError(f"invalid ssl.principal.mapping.rules at {text[pos:]!r}")
        pos = m.end()
        if m.group(2):
            rules.append(Rule(None))
        elif m.group(3) is not None and m.group(8) is None:
            pattern = m.group(3).replace("\\/", "/")
            replacement = re.sub(r"\$(\d)", r"\\g<\1>", m.group(5).replace("\\/", "/"))
            try:
                rules.append(Rule(re.compile(pattern), replacement, m.group(7)))
            except re.error as exc:
                raise MappingError(f"invalid pattern {pattern!r}: {exc}") from None
        elif m.group(8):
            raise MappingError(f"invalid ssl.principal.mapping.rules entry {m.group(8)!r}")
    return rules or [Rule(None)]


def _escape(value: str) -> str:
    out = re.sub(r'([,+"\\<>;=])', r"\\\1", value)
    if out.startswith(("#", " ")):
        out = "\\" + out
    return out[:-1] + "\\ " if out.endswith(" ") else out


def subject_name(subject: Sequence[Sequence[tuple[str, str]]]) -> str:
    """RFC 2253 text of a subject as ``ssl.SSLSocket.getpeercert()`` gives it (RDNs, most general first)."""
    rdns = ["+".join(f"{_SHORT.get(k, k)}={_escape(v)}" for k, v in rdn) for rdn in subject]
    return ",".join(reversed(rdns))


def map_subject(rules: list[Rule], subject: str) -> str:
    for rule in rules:
        name = rule.apply(subject)
        if name is not None:
            return name
    raise MappingError(f"no ssl.principal.mapping.rules entry matches {subject!r}")
