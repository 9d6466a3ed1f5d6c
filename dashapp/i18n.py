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
    # Overview page (实例概览). Placeholders in braces are filled in by the browser.
    "ui.title": {"zh": "实例概览", "en": "Instance overview"},
    "ui.title_with_count": {"zh": "({count}) 实例概览", "en": "({count}) Instance overview"},
    "ui.app_name": {"zh": "数据库实例实时状态监控", "en": "Database instance monitor"},
    "ui.summary.total": {"zh": "实例总数", "en": "Instances"},
    "ui.connection.connecting": {"zh": "连接中", "en": "Connecting"},
    "ui.connection.open": {"zh": "实时连接", "en": "Live"},
    "ui.connection.closed": {"zh": "连接断开", "en": "Disconnected"},
    "ui.connection.retrying": {"zh": "重连中 (第 {attempt} 次)", "en": "Reconnecting (attempt {attempt})"},
    "ui.stale.banner": {"zh": "数据已过期，最后更新于 {time}", "en": "Data is stale, last updated at {time}"},
    "ui.stale.badge": {"zh": "已过期", "en": "Stale"},
    "ui.card.latency": {"zh": "延迟", "en": "Latency"},
    "ui.card.latency_value": {"zh": "{value} ms", "en": "{value} ms"},
    "ui.card.last_check": {"zh": "最后检测", "en": "Last check"},
    "ui.card.never_checked": {"zh": "尚未检测", "en": "Not checked yet"},
    "ui.card.since": {"zh": "自 {time} 起", "en": "since {time}"},
    "ui.card.details": {"zh": "详情", "en": "Details"},
    "ui.card.no_details": {"zh": "无详情", "en": "No details"},
    "ui.unavailable": {"zh": "不可用", "en": "unavailable"},
    "ui.yes": {"zh": "是", "en": "yes"},
    "ui.no": {"zh": "否", "en": "no"},
    "ui.detail.version": {"zh": "版本", "en": "Version"},
    "ui.detail.uptime": {"zh": "运行时长", "en": "Uptime"},
    "ui.detail.uptime_s": {"zh": "运行时长", "en": "Uptime"},
    "ui.detail.role": {"zh": "角色", "en": "Role"},
    "ui.detail.connections": {"zh": "连接数", "en": "Connections"},
    "ui.detail.max_connections": {"zh": "最大连接数", "en": "Max connections"},
    "ui.detail.memory": {"zh": "内存", "en": "Memory"},
    "ui.detail.memory_bytes": {"zh": "内存", "en": "Memory"},
    "ui.detail.used_memory": {"zh": "已用内存", "en": "Used memory"},
    "ui.detail.read_only": {"zh": "只读", "en": "Read-only"},
    "ui.detail.in_recovery": {"zh": "恢复模式", "en": "In recovery"},
    "ui.detail.threads_connected": {"zh": "当前连接数", "en": "Threads connected"},
    "ui.detail.connected_clients": {"zh": "客户端连接数", "en": "Connected clients"},
    "ui.detail.replica": {"zh": "从库", "en": "Replica"},
    "ui.duration.days": {"zh": "{days} 天 {hours} 小时", "en": "{days} d {hours} h"},
    "ui.duration.hours": {"zh": "{hours} 小时 {minutes} 分", "en": "{hours} h {minutes} min"},
    "ui.duration.minutes": {"zh": "{minutes} 分 {seconds} 秒", "en": "{minutes} min {seconds} s"},
    "ui.type.mysql": {"zh": "MySQL", "en": "MySQL"},
    "ui.type.redis": {"zh": "Redis", "en": "Redis"},
    "ui.type.postgresql": {"zh": "PostgreSQL", "en": "PostgreSQL"},
    "ui.type.tcp": {"zh": "TCP", "en": "TCP"},
    "ui.filter.type": {"zh": "类型", "en": "Type"},
    "ui.filter.tag": {"zh": "标签", "en": "Tag"},
    "ui.filter.status": {"zh": "状态", "en": "Status"},
    "ui.filter.search": {"zh": "按名称搜索", "en": "Search by name"},
    "ui.filter.abnormal_first": {"zh": "异常优先", "en": "Abnormal first"},
    "ui.filter.shown": {"zh": "显示 {shown} / {total} 个实例", "en": "Showing {shown} of {total} instances"},
    "ui.filter.no_match": {"zh": "没有符合筛选条件的实例", "en": "No instance matches the filters"},
    "ui.empty": {"zh": "尚未配置任何实例", "en": "No instances are configured"},
    "ui.chart.status_share": {"zh": "状态占比", "en": "Status share"},
    "ui.chart.by_type": {"zh": "各类型状态", "en": "Status by type"},
    "ui.toast.changed": {"zh": "{name} 状态变为 {status}", "en": "{name} is now {status}"},
    "ui.toast.many": {"zh": "{count} 个实例状态发生变化", "en": "{count} instances changed status"},
    "ui.theme.dark": {"zh": "深色模式", "en": "Dark mode"},
    "ui.lang.switch": {"zh": "English", "en": "中文"},
    # Command line: configuration problems. Each message starts after "FILE:LINE: SUBJECT: ".
    "cli.config.subject.defaults": {"zh": "[defaults]", "en": "[defaults]"},
    "cli.config.subject.named": {"zh": "实例 \"{name}\"", "en": "instance \"{name}\""},
    "cli.config.subject.numbered": {"zh": "实例 #{number}", "en": "instance #{number}"},
    "cli.config.unreadable": {
        "zh": "无法读取配置文件（{reason}）；请检查路径，或用 --config 或 $DBMON_CONFIG 指定文件。",
        "en": "cannot read the configuration file ({reason}); check the path, "
              "or set --config or $DBMON_CONFIG."},
    "cli.config.not_utf8": {
        "zh": "文件不是有效的 UTF-8（第 {position} 字节）；请以 UTF-8 编码保存。",
        "en": "the file is not valid UTF-8 (byte {position}); save it as UTF-8."},
    "cli.config.syntax": {
        "zh": "TOML 语法错误：{error}；请修正该行。",
        "en": "invalid TOML: {error}; fix the syntax on that line."},
    "cli.config.syntax_unclosed": {
        "zh": "TOML 语法错误：这一行的 {opener} 没有对应的 {closer}（解析器在第 {found} 行发现：{error}）；请补上 {closer}。",
        "en": "invalid TOML: the {opener} on this line is never closed with {closer} (the parser "
              "noticed at line {found}: {error}); add the {closer}."},
    "cli.config.did_you_mean": {"zh": "是否想写 '{candidate}'？", "en": "Did you mean '{candidate}'?"},
    "cli.config.sentence_gap": {"zh": "", "en": " "},
    "cli.config.unknown_key_suggested": {
        "zh": "未知的键 '{option}'；是否想写 '{candidate}'？请更正或删除它。",
        "en": "unknown key '{option}'; did you mean '{candidate}'? Correct it or remove it."},
    "cli.config.unknown_key": {
        "zh": "未知的键 '{option}'；请删除它，或改用以下之一：{allowed}。",
        "en": "unknown key '{option}'; remove it or use one of: {allowed}."},
    "cli.config.wrong_type": {
        "zh": "{option} = {value} 是{actual}，但这里需要{expected}；请写成 {example} 这样的形式。",
        "en": "{option} = {value} is {actual}, but {expected} is required; write it like {example}."},
    "cli.config.missing": {
        "zh": "缺少 {option}；请添加，例如 {example}。",
        "en": "{option} is missing; add it, e.g. {example}."},
    "cli.config.blank": {
        "zh": "{option} = {value} 为空；请写成 {example} 这样的形式。",
        "en": "{option} = {value} is empty; write it like {example}."},
    "cli.config.control_character": {
        "zh": "{option} = {value} 含有控制字符；请删除它。",
        "en": "{option} = {value} contains a control character; remove it."},
    "cli.config.host_whitespace": {
        "zh": "host = {value} 含有空白字符；请只写主机名或 IP 地址。",
        "en": "host = {value} contains whitespace; write only the host name or IP address."},
    "cli.config.no_instances": {
        "zh": "没有配置任何实例；请至少添加一个 [[instances]] 表。",
        "en": "no instances are configured; add at least one [[instances]] table."},
    "cli.config.instances_not_list": {
        "zh": "instances = {value} 不是实例列表；请把每个实例写在各自的 [[instances]] 标题下。",
        "en": "instances = {value} is not a list of instances; "
              "write each instance under its own [[instances]] header."},
    "cli.config.duplicate_name": {
        "zh": "name = {value} 已被第 {first_line} 行的实例使用；每个实例的名称必须唯一。",
        "en": "name = {value} is already used by the instance at line {first_line}; "
              "give each instance a unique name."},
    "cli.config.unknown_type": {
        "zh": "type = {value} 不受支持；请使用以下之一：{allowed}。",
        "en": "type = {value} is not supported; use one of: {allowed}."},
    "cli.config.port_range": {
        "zh": "port = {value} 超出范围；请使用 1 到 65535 之间的整数。",
        "en": "port = {value} is out of range; use an integer from 1 to 65535."},
    "cli.config.password_both": {
        "zh": "同时设置了 password 和 password_env；请只保留其中一个。",
        "en": "password and password_env are both set; keep only one of them."},
    "cli.config.password_type": {
        "zh": "password 是{actual}，但这里需要字符串；请用引号括起来，或改用 password_env。",
        "en": "password is {actual}, but a string is required; put it in quotes, or use password_env."},
    "cli.config.env_unset": {
        "zh": "password_env = {value} 指向的环境变量未设置；请在启动前设置 {variable}，或更正变量名。",
        "en": "password_env = {value} names an environment variable that is not set; "
              "set {variable} before starting, or correct the name."},
    "cli.config.redis_database": {
        "zh": "database = {value} 不是 Redis 数据库编号；请使用不小于 0 的整数，例如 {example}。",
        "en": "database = {value} is not a Redis database number; "
              "use an integer of at least 0, e.g. {example}."},
    "cli.config.tags_items": {
        "zh": "tags = {value} 只能包含非空字符串；请写成 {example} 这样的形式。",
        "en": "tags = {value} must contain only non-empty strings; write it like {example}."},
    "cli.config.not_positive": {
        "zh": "{option} = {value} 不是正数；请使用大于 0 的秒数，例如 {example}。",
        "en": "{option} = {value} is not a positive number; use seconds greater than 0, e.g. {example}."},
    "cli.config.threshold_range": {
        "zh": "{option} = {value} 小于 1；请使用不小于 1 的整数，例如 {example}。",
        "en": "{option} = {value} is less than 1; use an integer of at least 1, e.g. {example}."},
    "cli.config.ssl_mode": {
        "zh": "ssl_mode = {value} 不是允许的值；请使用以下之一：{allowed}。",
        "en": "ssl_mode = {value} is not allowed; use one of: {allowed}."},
    "cli.config.ca_file_unreadable": {
        "zh": "ca_file = {value} 无法读取（{path}：{reason}）；请指定可读的 PEM 文件，"
              "相对路径以配置文件所在目录为基准。",
        "en": "ca_file = {value} cannot be read ({path}: {reason}); give a readable PEM file, "
              "relative to the configuration file's directory or absolute."},
    "cli.config.tls_not_redis": {
        "zh": "tls 只适用于 redis 类型；type = \"{type}\" 的实例请删除 tls，需要加密时设置 ssl_mode。",
        "en": "tls applies only to type \"redis\"; for type \"{type}\" remove it, "
              "and set ssl_mode to encrypt the connection."},
    "cli.config.not_applicable": {
        "zh": "{option} 不适用于 type = \"{type}\"（只适用于 {allowed}）；请删除它。",
        "en": "{option} does not apply to type \"{type}\" (only to {allowed}); remove it."},
    "cli.config.ca_file_without_tls": {
        "zh": "设置了 ca_file 但未启用 tls；请设置 tls = true，或删除 ca_file。",
        "en": "ca_file is set but tls is not enabled; set tls = true or remove ca_file."},
    "cli.config.ca_file_ssl_disabled": {
        "zh": "设置了 ca_file 但 ssl_mode = \"disable\"；请改用 verify-ca 或 verify-full，或删除 ca_file。",
        "en": "ca_file is set but ssl_mode = \"disable\"; use verify-ca or verify-full, or remove ca_file."},
    "cli.config.type.boolean": {"zh": "布尔值", "en": "a boolean"},
    "cli.config.type.integer": {"zh": "整数", "en": "an integer"},
    "cli.config.type.float": {"zh": "浮点数", "en": "a float"},
    "cli.config.type.string": {"zh": "字符串", "en": "a string"},
    "cli.config.type.array": {"zh": "数组", "en": "an array"},
    "cli.config.type.table": {"zh": "表", "en": "a table"},
    "cli.config.type.datetime": {"zh": "日期时间", "en": "a date or time"},
    "cli.config.expect.table": {"zh": "表", "en": "a table"},
    "cli.config.expect.string": {"zh": "字符串", "en": "a string"},
    "cli.config.expect.port": {"zh": "整数（1 到 65535）", "en": "an integer from 1 to 65535"},
    "cli.config.expect.string_list": {"zh": "字符串列表", "en": "a list of strings"},
    "cli.config.expect.seconds": {"zh": "正数（秒）", "en": "a positive number of seconds"},
    "cli.config.expect.threshold": {"zh": "不小于 1 的整数", "en": "an integer of at least 1"},
    "cli.config.expect.boolean": {"zh": "布尔值 true 或 false", "en": "true or false"},
    # Command line: commands, options and output.
    "cli.description": {
        "zh": "数据库实例实时状态监控",
        "en": "Real-time database instance monitor"},
    "cli.help.check": {"zh": "校验配置文件", "en": "validate the configuration file"},
    "cli.help.probe": {
        "zh": "对每个启用的实例并发检测一次，并打印结果",
        "en": "probe every enabled instance once, concurrently, and print the results"},
    "cli.help.config": {
        "zh": "配置文件路径（默认：$DBMON_CONFIG，未设置时为当前目录下的 instances.toml）",
        "en": "configuration file (default: $DBMON_CONFIG, or instances.toml in the current directory)"},
    "cli.help.lang": {"zh": "输出语言：zh 或 en（默认 zh）", "en": "output language: zh or en (default zh)"},
    "cli.help.json": {"zh": "以 JSON 列表输出结果", "en": "print the results as a JSON list"},
    "cli.check.ok": {
        "zh": "正常：{path} 中共 {count} 个实例（启用 {enabled} 个）。",
        "en": "OK: {count} instances in {path} ({enabled} enabled)."},
    "cli.check.failed": {
        "zh": "{path}：发现 {count} 个问题，未启动任何检测。",
        "en": "{path}: {count} problem(s) found; nothing was started."},
    "cli.probe.column.name": {"zh": "名称", "en": "Name"},
    "cli.probe.column.type": {"zh": "类型", "en": "Type"},
    "cli.probe.column.address": {"zh": "地址", "en": "Address"},
    "cli.probe.column.status": {"zh": "状态", "en": "Status"},
    "cli.probe.column.latency": {"zh": "延迟", "en": "Latency"},
    "cli.probe.column.reason": {"zh": "原因", "en": "Reason"},
    "cli.probe.summary": {
        "zh": "运行中 {running} 个，异常 {abnormal} 个，维护中 {maintenance} 个，已停用未检测 {disabled} 个。",
        "en": "{running} running, {abnormal} abnormal, {maintenance} in maintenance, "
              "{disabled} disabled and not probed."},
    "cli.probe.none_enabled": {
        "zh": "没有启用的实例，未进行检测。", "en": "No instance is enabled; nothing was probed."},
    "cli.probe.no_return": {
        "zh": "检测在 {seconds} 秒内没有返回", "en": "the probe did not return within {seconds} s"},
    "cli.probe.raised": {"zh": "检测程序出错：{error}", "en": "the probe raised an error: {error}"},
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
