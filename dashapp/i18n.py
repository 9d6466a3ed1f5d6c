"""The message catalog: every string a person reads, in Simplified Chinese (default) and English.

Keys are dotted, grouped by where the string appears (status., failure., cli., ui., ...). The
browser gets the catalog of its language through `catalog_for`, so assets/ holds no UI text.
"""

from __future__ import annotations

DEFAULT_LANG = "zh"
LANGS = ("zh", "en")

CATALOG: dict[str, dict[str, str]] = {
    # Statuses, as the product names them.
    "status.pending": {"zh": "检测中", "en": "Pending"},
    "status.running": {"zh": "运行中", "en": "Running"},
    "status.abnormal": {"zh": "异常", "en": "Abnormal"},
    "status.maintenance": {"zh": "维护中", "en": "Maintenance"},
    "status.degraded": {"zh": "降级", "en": "Degraded"},
    # Failure kinds of a probe.
    "failure.refused": {"zh": "连接被拒绝", "en": "Connection refused"},
    "failure.timeout": {"zh": "超时", "en": "Timed out"},
    "failure.authentication": {"zh": "认证失败", "en": "Authentication failed"},
    "failure.dns": {"zh": "域名解析失败", "en": "DNS lookup failed"},
    "failure.tls": {"zh": "TLS 错误", "en": "TLS error"},
    "failure.protocol": {"zh": "协议错误", "en": "Protocol error"},
    "failure.other": {"zh": "其他错误", "en": "Other error"},
}


def normalize_lang(lang: str | None) -> str:
    """Map a request's language ("en", "en-US", "zh-CN", None) to a catalog language."""
    if lang and lang.lower().startswith("en"):
        return "en"
    return DEFAULT_LANG


def t(key: str, lang: str = DEFAULT_LANG, **values) -> str:
    """Translate `key`; fall back to Chinese, then to the key itself so a gap is visible, not fatal."""
    entry = CATALOG.get(key)
    if entry is None:
        return key
    text = entry.get(normalize_lang(lang)) or entry[DEFAULT_LANG]
    return text.format(**values) if values else text


def catalog_for(lang: str) -> dict[str, str]:
    """Return every string in one language, for the browser."""
    lang = normalize_lang(lang)
    return {key: entry.get(lang) or entry[DEFAULT_LANG] for key, entry in CATALOG.items()}
