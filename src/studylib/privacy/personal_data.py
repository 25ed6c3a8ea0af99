"""Recognising personal data, the key, person tokens and deny-listed names in text.

:class:`TextScanner` finds, in any text, what must never reach a report:

- ``cpr``: CPR numbers ``DDMMYY-SSSS`` or ``DDMMYYSSSS`` with a valid day and month (no
  modulus-11 check: numbers issued since 2007 need not pass it); also right after ``CPR``.
- ``phone``: Danish phone numbers: 8 digits after ``+45`` or ``0045`` in any grouping; 8
  digits grouped ``12 34 56 78`` or ``1234 5678`` right after a word such as tlf, tel,
  phone, mobil, sms, ring; and 8 digits written together starting 2-9 that are not a date
  ``YYYYMMDD`` (Danish numbers never start with 0 or 1). Counts in tables are written apart
  or with thousands separators, so they do not match.
- ``email``, ``iban`` (country, check digits, mod-97 valid), ``passport`` (1-2 capital
  letters and 6-8 digits as a word, or 6-9 letters and digits after pas/passport).
- ``key``: the pseudonymisation key as hex, base64 or Python bytes text, or a run of 24+
  base64 characters that is part of it; and any 12 or more hex digits of it however they are
  written: in groups of any size and any separator (spaces, colons, dashes, ``0x``
  prefixes, line breaks), in any case, as a list of integers (``[10, 27, 200, ...]``, numpy
  style without commas too), or in base64.
- ``token``: a run of 32 or more hex digits (a person token, also cut short by a display),
  also as a UUID (8-4-4-4-12) or in even groups of 4 or more digits; provenance hashes are
  exempt when written ``sha256:<hex>`` or ``sha256 <hex>``. With a deny list that lists the
  dataset's token prefixes (:func:`studylib.privacy.denylist.make_token_list`): any 12 hex
  digits that begin one of the dataset's tokens, in any of the spellings above.
- ``deny-list``: a word or group of up to four words whose keyed hash is on the deny list, in
  any word order (``Okafor, Maria``), with look-alike letters of other scripts folded; and
  a run of words copied from a free-text note (the deny list's note sequences).

Data URIs (embedded images) are blanked before scanning: they are pictures, not text.
What a finding shows is masked (``######-####``), so the audit's own output leaks nothing.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass
from datetime import date

from studylib.privacy.denylist import TOKEN_PREFIX, WORD, DenyList, fold_text, skeleton, sorted_group

RULES = {
    "cpr": "CPR number",
    "phone": "phone number",
    "email": "e-mail address",
    "passport": "passport-like number",
    "iban": "IBAN",
    "key": "the pseudonymisation key",
    "token": "person token (long hex run)",
    "deny-list": "deny-listed name or identifier",
}

_A = r"(?<![0-9A-Za-z])"
_Z = r"(?![0-9A-Za-z])"
_SEP = r"[ \u00a0.\-]"
# one pass over the digit runs of a text: 6 digits, an optional dash, then 4 digits (CPR) or 2 (8 digits)
_DIGITS = re.compile(rf"{_A}(\d\d)(\d\d)(\d\d)([-\u2010\u2011\u2013]?)(\d{{4}}|\d\d){_Z}")
_CPR_AFTER_WORD = re.compile(r"cpr(?:-?nr|nummer)?[.:#]?[ \u00a0]?(\d\d)(\d\d)\d\d[-\u2010\u2011\u2013]?\d{4}(?![0-9a-z])")
_PHONE_PREFIXED = re.compile(rf"(?<![\w+])(?:\+|00)[ \u00a0]?45\)?{_SEP}?(?:\d{_SEP}?){{7}}\d(?!\d)")
_CUES = re.compile(r"tlf|tel|phone|mob|cell|sms|ring|whatsapp|kontakt|pas|cpr")
_PHONE_CUE = re.compile(
    r"\b(?:tlf|tel|telefon|telephone|phone|mobil|mobile|mob|cell|sms|ring|whatsapp|kontakt)\b[^\w\n]{0,6}"
    rf"((?:\d\d{_SEP}){{3}}\d\d|\d{{4}}{_SEP}\d{{4}})(?![\d])"
)
_PASSPORT_CUE = re.compile(r"\b(?:pas|pass|passport|pasnummer|pasnr|passnr)\b\.?(?:\s*(?:no|nr|number|nummer)\.?)?[\s:#]*([a-z0-9]{6,9})\b")
_EMAIL = re.compile(r"(?<![\w.+-])[A-Za-z0-9][A-Za-z0-9._%+-]*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b")
_CAPS_DIGITS = re.compile(r"[A-Z]\d\d")
_IBAN = re.compile(rf"{_A}([A-Z]{{2}}\d\d(?:[ ]?[A-Z0-9]{{4}}){{2,7}}(?:[ ]?[A-Z0-9]{{1,3}})?){_Z}")
_PASSPORT = re.compile(rf"{_A}[A-Z]{{1,2}}\d{{6,8}}{_Z}")
_RUN = re.compile(r"[A-Za-z0-9+/_-]{24,}={0,2}")
_HEX = re.compile(r"(?<![0-9a-fA-F])[0-9a-fA-F]{24,}(?![0-9a-fA-F])")
_EXEMPT_HASH = re.compile(r"(?i)(?:sha256|sha1|md5)[: ]$")
# hex digits in groups of any size, with any separator between them (or 0x before each)
_HEX_GROUPS = re.compile(r"(?<![0-9A-Za-z])(?:0[xX])?[0-9a-fA-F]+(?:(?:[\s:;,._\-]{1,3}|\\x)(?:0[xX])?[0-9a-fA-F]+)*(?![0-9A-Za-z])")
_GROUP_SPLIT = re.compile(r"(?:[\s:;,._\-]{1,3}|\\x)")
_UUID = re.compile(r"(?<![0-9A-Za-z])[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}(?![0-9A-Za-z])")
# integers 0..999 separated by commas or white space, six or more (bytes written as numbers)
_INT_LIST = re.compile(r"(?<![\d.])\d{1,3}(?:(?:\s*[,;]\s*|\s+)\d{1,3}){5,}(?![\d.])")
_B64_RUN = re.compile(r"[A-Za-z0-9+/_-]{16,}={0,2}")
#: Fewest hex digits compared with the key and the tokens (6 bytes).
MIN_HEX = 12
_DATA_URI = re.compile(r"data:[\w/+.-]+(?:;[\w=.-]+)*;base64,[A-Za-z0-9+/=]+")
_NOT_BEFORE_PHONE = set(".,+-/#=_")

_IBAN_LENGTH = {"DK": 18, "FO": 18, "GL": 18, "NO": 15, "SE": 24, "FI": 18, "DE": 22, "GB": 22, "NL": 18,
                "BE": 16, "FR": 27, "ES": 24, "IT": 27, "PL": 28, "RO": 24, "BG": 22, "LT": 20, "LV": 21,
                "EE": 20, "IE": 22, "PT": 25, "AT": 20, "CH": 21, "UA": 29, "CZ": 24, "SK": 24, "HU": 28}


@dataclass(frozen=True)
class Match:
    """One thing found in a text: its rule, where it starts (character offset) and a masked view."""

    rule: str
    start: int
    shown: str


class TextScanner:
    """Scan texts for personal data, the key (when given), tokens and deny-listed names (when given)."""

    def __init__(self, key: bytes | None = None, deny_list: DenyList | None = None) -> None:
        if deny_list is not None and key is None:
            raise ValueError("a deny list holds keyed hashes: the key is needed to use it")
        self.key = key
        self.deny_list = deny_list
        self._key_forms = _key_forms(key) if key else []
        self._key_hex = key.hex() if key else ""
        self._key_b64 = [f.rstrip("=") for f in self._key_forms if not re.fullmatch(r"[0-9a-fA-F]+", f)]
        self._key_windows = {self._key_hex[i:i + MIN_HEX] for i in range(len(self._key_hex) - MIN_HEX + 1)}
        self._seen: dict[tuple[str, str], bool] = {}
        self._prefix_seen: dict[str, bool] = {}
        self._note_word_seen: dict[str, bool] = {}

    def scan(self, text: str) -> list[Match]:
        """Everything found in ``text``, in order of position (offsets into ``text`` with any
        data URI shortened to ``data:``; lines are the same)."""
        if not text:
            return []
        text = strip_data_uris(text)
        found = self._digit_runs(text)
        if "45" in text:
            found += [Match("phone", m.start(), "+45 ########") for m in _PHONE_PREFIXED.finditer(text)]
        if "@" in text:
            found += [Match("email", m.start(), _mask_email(m.group())) for m in _EMAIL.finditer(text)]
        if _CAPS_DIGITS.search(text):
            found += self._ibans(text)
            found += [Match("passport", m.start(), _mask(m.group())) for m in _PASSPORT.finditer(text)]
        lowered = text.lower()
        if len(lowered) == len(text) and _CUES.search(lowered):
            found += self._after_cues(lowered)
        found += self._keys_and_tokens(text)
        if self.deny_list is not None:
            found += self._denied(text)
        found.sort(key=lambda m: m.start)
        return _dedupe(found)

    def _digit_runs(self, text: str) -> list[Match]:
        """CPR numbers (6 + 4 digits) and phone numbers written as 8 digits, in one pass."""
        out = []
        for m in _DIGITS.finditer(text):
            day, month, _, dash, tail = m.groups()
            if len(tail) == 4:
                if _valid_day_month(int(day), int(month)):
                    out.append(Match("cpr", m.start(), "######-####"))
            elif not dash and day[0] not in "01":
                before = text[m.start() - 1] if m.start() else " "
                after = text[m.end():m.end() + 2]
                if before not in _NOT_BEFORE_PHONE and not (after[:1] in (".", ",") and after[1:2].isdigit()):
                    if not _is_date(m.group().replace("-", "")):
                        out.append(Match("phone", m.start(), "########"))
        return out

    def _after_cues(self, lowered: str) -> list[Match]:
        """Numbers that follow a word such as tlf, phone, cpr or passport (text in lower case)."""
        out = [Match("phone", m.start(1), "## ## ## ##") for m in _PHONE_CUE.finditer(lowered)]
        out += [Match("passport", m.start(1), _mask(m.group(1).upper())) for m in _PASSPORT_CUE.finditer(lowered)
                if re.search(r"\d", m.group(1))]
        if "cpr" in lowered:
            out += [Match("cpr", m.start(1), "######-####") for m in _CPR_AFTER_WORD.finditer(lowered)
                    if _valid_day_month(int(m.group(1)), int(m.group(2)))]
        return out

    def _ibans(self, text: str) -> list[Match]:
        out = []
        for m in _IBAN.finditer(text):
            compact = m.group(1).replace(" ", "")
            length = _IBAN_LENGTH.get(compact[:2])
            candidates = [compact[:length]] if length and len(compact) >= length else [compact]
            if any(_iban_valid(c) for c in candidates):
                out.append(Match("iban", m.start(1), compact[:2] + "## " + "#" * 4 + " ..."))
        return out

    def _keys_and_tokens(self, text: str) -> list[Match]:
        out = []
        for form in self._key_forms:
            start = text.find(form)
            while start >= 0:
                out.append(Match("key", start, "[the key]"))
                start = text.find(form, start + 1)
        for run in _RUN.finditer(text):
            value = run.group()
            if self._key_b64 and any(value.rstrip("=") in f or f in value for f in self._key_b64):
                out.append(Match("key", run.start(), "[part of the key]"))
            for m in _HEX.finditer(value):
                hexes, start = m.group(), run.start() + m.start()
                if self._is_key(hexes.lower()):
                    continue  # reported as the key below
                if len(hexes) >= 32 and re.search(r"[a-fA-F]", hexes) and not _EXEMPT_HASH.search(text[max(0, start - 7):start]):
                    out.append(Match("token", start, f"{hexes[:4]}... ({len(hexes)} hex digits)"))
        out += [Match("token", m.start(), "[UUID-shaped token]") for m in _UUID.finditer(text)]
        for start, hexes, grouped in _hex_candidates(text):
            if grouped and _even_groups(grouped) and not self._is_key(hexes):
                out.append(Match("token", start, f"[{len(hexes)} hex digits in groups]"))
            out += self._keyed_hex(start, hexes)
        return out

    def _is_key(self, hexes: str) -> bool:
        """Whether lower-case ``hexes`` holds 12 or more hex digits of the key."""
        return bool(self._key_windows) and any(hexes[i:i + MIN_HEX] in self._key_windows for i in range(len(hexes) - MIN_HEX + 1))

    def _keyed_hex(self, start: int, hexes: str) -> list[Match]:
        """The key or a dataset token in ``hexes`` (lower-case hex digits found at ``start``)."""
        if len(hexes) < MIN_HEX:
            return []
        windows = {hexes[i:i + MIN_HEX] for i in range(len(hexes) - MIN_HEX + 1)}
        out = []
        if self._key_windows and windows & self._key_windows:
            out.append(Match("key", start, "[part of the key]"))
        if self.deny_list is not None and self.deny_list.token_prefix == TOKEN_PREFIX:
            if self._listed_prefixes(windows):
                out.append(Match("token", start, "[a token of the dataset]"))
        return out

    def _listed_prefixes(self, windows: set[str]) -> bool:
        new = [w for w in windows if w not in self._prefix_seen]
        if new:
            hits = self.deny_list.lookup_token_prefixes(new, self.key)
            self._prefix_seen.update((w, w in hits) for w in new)
        return any(self._prefix_seen[w] for w in windows)

    def _listed(self, groups: list[str], notes: list[str]) -> set[str]:
        """The word groups and note sequences on the deny list (each hashed once per scanner)."""
        new = [g for g in groups if ("n", g) not in self._seen]
        if new:
            hits = self.deny_list.lookup(new, self.key)
            self._seen.update((("n", g), g in hits) for g in new)
        new = [g for g in notes if ("s", g) not in self._seen]
        if new:
            hits = self.deny_list.lookup_notes(new, self.key)
            self._seen.update((("s", g), g in hits) for g in new)
        return {g for g in groups if self._seen[("n", g)]} | {"\x1e" + g for g in notes if self._seen[("s", g)]}

    def _hits(self, text: str) -> set[str]:
        folded = skeleton(fold_text(text))
        groups = _word_groups(folded, self.deny_list.max_words, ordered=self.deny_list.ordered)
        notes = self._note_sequences(folded) if self.deny_list.note_words else []
        return self._listed(groups, notes)

    def _note_sequences(self, folded: str) -> list[str]:
        """The runs of ``note_words`` words of the text that could come from a note: every word of
        them is a word of some note (the deny list lists each note word, keyed)."""
        words = WORD.findall(folded)
        new = [w for w in dict.fromkeys(words) if w not in self._note_word_seen]
        if new:
            hits = self.deny_list.lookup_note_words(new, self.key)
            self._note_word_seen.update((w, w in hits) for w in new)
        size, out, run = self.deny_list.note_words, set(), 0
        for i, w in enumerate(words):
            run = run + 1 if self._note_word_seen[w] else 0
            if run >= size:
                out.add(" ".join(words[i - size + 1:i + 1]))
        return list(out)

    def _denied(self, text: str) -> list[Match]:
        hits = self._hits(text)
        if not hits:
            return []
        out, left = [], set(hits)
        offset = 0
        for line in text.split("\n"):  # where: the first line that holds each hit
            found = left & self._hits(line)
            for form in found:
                out.append(Match("deny-list", offset, _shown(form)))
            left -= found
            offset += len(line) + 1
            if not left:
                break
        out += [Match("deny-list", 0, _shown(f)[:-1] + ", across lines]") for f in left]
        return out


def _shown(form: str) -> str:
    if form.startswith("\x1e"):
        return f"[words of a free-text note, {len(form[1:].split(' '))} words]"
    return f"[deny-listed, {len(form.split(' '))} word(s)]"


def _hex_candidates(text: str) -> list[tuple[int, str, list[str] | None]]:
    """Hex digits however written: (start, the digits in lower case, the groups when grouped).

    Grouped hex (any separator), integer lists (bytes as numbers) and base64 runs (decoded)."""
    out = []
    for m in _HEX_GROUPS.finditer(text):
        value = m.group()
        if len(value) < MIN_HEX:
            continue  # fewer characters than the digits needed (most numbers of a table)
        groups = [g[2:] if g[:2] in ("0x", "0X") else g for g in _GROUP_SPLIT.split(value) if g]
        groups = [g for g in groups if g]
        joined = "".join(groups).lower()
        if len(joined) >= MIN_HEX:
            out.append((m.start(), joined, groups if len(groups) > 1 else None))
    for m in _INT_LIST.finditer(text):
        numbers = [int(n) for n in re.findall(r"\d+", m.group())]
        run: list[int] = []
        for n in numbers + [256]:  # bytes: runs of numbers up to 255
            if n <= 255:
                run.append(n)
                continue
            if len(run) * 2 >= MIN_HEX:
                out.append((m.start(), bytes(run).hex(), None))
            run = []
    for m in _B64_RUN.finditer(text):
        value = m.group().rstrip("=")
        if re.fullmatch(r"[0-9a-fA-F]+", value):
            continue  # plain hex: seen above
        for shift in range(4):
            decoded = _b64(value[shift:])
            if decoded is None or len(decoded) < MIN_HEX // 2:
                continue
            out.append((m.start(), decoded.hex(), None))
            try:
                inner = decoded.decode("ascii")
            except UnicodeDecodeError:
                continue
            if re.fullmatch(r"[0-9a-fA-F]{12,}", inner):  # a hex token encoded as text
                out.append((m.start(), inner.lower(), None))
    return out


def _b64(value: str) -> bytes | None:
    value = value[: len(value) - len(value) % 4]
    if not value:
        return None
    try:
        if "-" in value or "_" in value:
            return base64.urlsafe_b64decode(value)
        return base64.b64decode(value, validate=True)
    except (ValueError, base64.binascii.Error):
        return None


def _even_groups(groups: list[str]) -> bool:
    """Hex in even groups (4 or more digits each, the last may be shorter), 32 digits or more, with
    letters and digits: how a token is shown split for reading."""
    total = sum(map(len, groups))
    if total < 32 or len(groups) < 2:
        return False
    size = len(groups[0])
    if size < 4 or any(len(g) != size for g in groups[:-1]) or len(groups[-1]) > size:
        return False
    joined = "".join(groups)
    return bool(re.search(r"[a-fA-F]", joined)) and bool(re.search(r"\d", joined))


def _word_groups(folded: str, longest: int, ordered: bool = False) -> list[str]:
    """Every word and group of up to ``longest`` neighbouring words, once each; the words of a
    group sorted (as names are listed) unless ``ordered``."""
    words = WORD.findall(folded)
    groups = set(words)
    join = " ".join if ordered else sorted_group
    for size in range(2, longest + 1):
        groups.update(map(join, zip(*(words[k:] for k in range(size)))))
    return list(groups)


def strip_data_uris(text: str) -> str:
    """The text with every base64 data URI (an embedded picture or font) shortened to ``data:``."""
    return _DATA_URI.sub("data:", text) if "base64," in text else text


def _key_forms(key: bytes) -> list[str]:
    """Texts in which the key could appear: hex (both cases), base64 (standard, URL-safe), bytes repr."""
    forms = {key.hex(), key.hex().upper()}
    for encode in (base64.b64encode, base64.urlsafe_b64encode):
        encoded = encode(key).decode("ascii")
        forms.update({encoded, encoded.rstrip("=")})
    shown = repr(bytes(key))[2:-1]
    if len(shown) >= 16:
        forms.add(shown)
    try:
        text = key.decode("ascii")
        if text.isprintable() and len(text.strip()) >= 16:
            forms.add(text.strip())
    except UnicodeDecodeError:
        pass
    return sorted(forms, key=len, reverse=True)


def _valid_day_month(day: int, month: int) -> bool:
    if not 1 <= month <= 12 or day < 1:
        return False
    return day <= (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)[month - 1]


def _is_date(digits: str) -> bool:
    """Whether 8 digits read as a date YYYYMMDD from 1900 to 2099."""
    year, month, day = int(digits[:4]), int(digits[4:6]), int(digits[6:])
    if not 1900 <= year <= 2099:
        return False
    try:
        date(year, month, day)
    except ValueError:
        return False
    return True


def _iban_valid(iban: str) -> bool:
    if not 15 <= len(iban) <= 34 or not iban[:2].isalpha() or not iban[2:4].isdigit():
        return False
    moved = iban[4:] + iban[:4]
    number = "".join(str(int(c, 36)) for c in moved)
    return int(number) % 97 == 1


def _mask(text: str) -> str:
    return re.sub(r"\d", "#", text)


def _mask_email(text: str) -> str:
    local, _, domain = text.partition("@")
    return f"{local[:1]}***@***.{domain.rsplit('.', 1)[-1]}"


def _dedupe(found: list[Match]) -> list[Match]:
    seen, out = set(), []
    for m in found:
        if (m.rule, m.start) not in seen:
            seen.add((m.rule, m.start))
            out.append(m)
    return out
