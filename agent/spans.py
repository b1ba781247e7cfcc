"""What kind of answer a question wants, and the spans of a line that could be it.

People ask "Which flag prints only the version?" and want ``-V``, not the sentence that names the
topic; "How do I list installed packages?" wants the command on the line *after* "Use the following
command to list them:". :func:`answer_type` reads the question (zh and en) for the type of value it
asks for; :func:`spans` finds values of that type in one line, each with a *fit* in [0, 1] (how
surely the span is of that type). The extractive answerer scores a candidate as question coverage
of its context plus the fit of its span (:func:`agent.evidence.score_typed`).
"""

from __future__ import annotations

import re
from typing import Literal

from imgrag.indexing.text import CJK, normalize, squash

AnswerType = Literal[
    "command", "option", "path", "version", "number", "key", "group", "name",
    "yesno", "definition", "list", "general",
]

# Types answered by a short value inside a line; the others quote the line itself.
VALUE_TYPES: frozenset[str] = frozenset({"command", "option", "path", "version", "number", "key", "group", "name"})

# Order matters: the first rule that matches names the type.
_TYPE_RULES: list[tuple[AnswerType, re.Pattern[str]]] = [
    ("key", re.compile(r"(\bwhich\s+keys?\b|\bwhat\s+keys?\b|\bkey\s*(?:combination|stroke|binding)s?\b|\bshortcut\b"
                       r"|哪个键|什么键|哪些键|按什么|快捷键|组合键)", re.I)),
    ("option", re.compile(r"(\b(?:which|what)\s+(?:\w+\s+)?(?:option|flag|switch|argument|parameter)s?\b"
                          r"|\boption\s+(?:of|to|for)\b|哪个(?:选项|参数)|什么(?:选项|参数)|哪些(?:选项|参数)|的(?:哪个)?参数|挂载选项)", re.I)),
    ("version", re.compile(r"(\b(?:which|what)\s+(?:\w+\s+)?version\b|\bsince\s+which\b|哪个版本|什么版本|版本(?:号)?是|从哪个.*版本)", re.I)),
    ("group", re.compile(r"(\b(?:which|what)\s+group\b|\bmembers\s+of\s+which\s+group\b|哪个组|什么组|哪个群组)", re.I)),
    ("path", re.compile(r"(\b(?:which|what)\s+(?:\w+\s+)?(?:file|directory|folder|path|device\s+file|script|special\s+file|device)\b"
                        r"|\bwhere\s+(?:is|are|was|were|did|do|does|can)\b|\bwhere\b.*\b(?:stored|kept|located|live|moved?)\b"
                        r"|哪个(?:文件|目录|设备文件|路径|脚本)|什么(?:文件|目录|路径)|放在哪|存在哪|存放在哪|在哪个(?:文件|目录)|哪个家目录|家目录是)", re.I)),
    ("command", re.compile(r"(\b(?:which|what)\s+(?:\w+\s+)?commands?\b|\bcommand\s+(?:to|for|that)\b|\bhow\s+(?:do|can|should|would)\s+(?:i|you|we|one)\b"
                           r"|\bwhat\s+should\s+i\s+(?:type|run|enter)\b|\bwhat(?:'s| is)\s+the\s+command\b|\bwhich\s+\w+\s+starts\b"
                           r"|什么命令|哪个命令|哪些命令|用什么命令|输入什么|怎么|怎样|如何|用哪个命令)", re.I)),
    ("number", re.compile(r"(\b(?:which|what)\s+(?:\w+\s+)?(?:port|size|limit|timeout|percentage)\b|端口|\bhow\s+(?:many|big|large|long|much)\b|\bwhat\s+(?:\w+\s+)?(?:number|size|count|value)\b|\bat\s+what\s+(?:number|count)\b"
                          r"|多少|几个|几位|几节|第几|多大|从几|数值|编号)", re.I)),
    ("list", re.compile(r"(\b(?:which|what)\s+(?:\w+\s+){0,2}(?:programs|packages|commands|files|groups|options|kinds|types|characters|ones)\b"
                        r"|\bwhat\s+are\s+the\b|\blist\b(?!\s+of)|哪些|哪几)", re.I)),
    ("name", re.compile(r"(\b(?:which|what)\s+(?:\w+\s+)?(?:package|shell|program|daemon|mechanism|tool|editor|manager|display\s+manager|browser|table|scheme|manual)\b"
                        r"|\bwhat\s+(?:is|are)\s+\w+\s+called\b|哪个(?:软件)?包|哪个程序|什么机制|哪个工具|哪本|哪个显示管理器|哪个表)", re.I)),
    ("definition", re.compile(r"(\bwhat\s+(?:is|are|does|do)\b|\bwhat\s+.*\b(?:mean|stand\s+for|called)\b|\bwhat\s+happens\b|\bwhat\s+else\b"
                              r"|是什么|什么是|有什么用|表示什么|做什么|叫什么|返回什么|什么作用|什么意思|^\s*what\b)", re.I)),
    ("yesno", re.compile(r"(^\s*(?:is|are|can|does|do|should|must|may|will|was|were)\b|吗[？?]?\s*$|是否|有没有|能否)", re.I)),
]


# Types that are clearly not a date or a party: "How do I … when I'm in the GUI?" asks for a key,
# "Who may …" in a manual asks for a group.
NOT_DATE_OR_PARTY: frozenset[str] = frozenset({"command", "option", "path", "version", "key", "group", "number"})


def answer_type(question: str) -> AnswerType:
    """The kind of value a question asks for, from its wording (zh or en); ``general`` when none."""
    bare = re.sub(r"[\"“「『《][^\"”」』》]*[\"”」』》]", " ", question)
    for atype, pat in _TYPE_RULES:
        if pat.search(bare):
            return atype
    return "general"


# -- spans ---------------------------------------------------------------------------------------
_PROMPT = re.compile(r"^\s*(?:[\w@.~:-]*[$#]|\$|#)\s+(?=\S)")
_QUOTES = re.compile(r"[\"”“「『]\s*([^\"”“」』]{1,80}?)\s*[\"”“」』]")
# "mount(8)"; OCR sometimes drops the section's digit ("udev()机制"), the name is still the answer.
_MANREF = re.compile(r"(?<![\w/.-])([a-z][\w.+-]{0,30})\((\d?)\)")
_OPTION = re.compile(r"(?<![\w/-])(--?[A-Za-z][\w-]*(?:=\S+)?)")
_PATH = re.compile(r"(?<![\w/])((?:~|\.{1,2})?/(?:[\w.*@+:\[\]-]+/?)*|~/[\w.*-]+(?:/[\w.*-]+)*)")
_VERSION = re.compile(r"(?<![\w.])(\d+\.\d+(?:\.\d+)*(?:-[\w.+-]+)?)(?![\w.])")
# A digit may touch a Chinese character ("主设备号是8"), not a Latin one; a number word is not part of
# a path ("/dev/zero").
_NUMBER = re.compile(rf"(?<![A-Za-z0-9_.])(\d+(?:[.,]\d+)?(?:\s*(?:to|-|到|至)\s*\d+)?(?:\s*(?:位|个|kB|KB|MB|GB|bytes?|%))?)(?![A-Za-z0-9_.])"
                     rf"|(?<![/\w-])(zero|one|two|three|four|five|six|seven|eight|nine|ten|twelve)\b|([零〇一二两三四五六七八九十]+(?=个|位|种|次))|(?<![{CJK}])(零)(?![{CJK}])|(?<=是)(零)", re.I)
_KEY = re.compile(r"((?:(?:Left-|Right-)?(?:Ctrl|Alt|Shift|Super|Esc|Meta)[- +])+(?:[A-Za-z0-9]{1,3}|F\d{1,2}|Del|Tab|Enter|Ins)(?![\w])|\bF\d{1,2}\b|\^[A-Z]\b)")
_IDENT = re.compile(r"(?<![\w/.$-])([a-z][a-z0-9+._-]{1,30}[a-z0-9])(?![\w/(-])")
_CODEY = re.compile(r"^[\w./~$:=+@*,\[\]-]+(?:\s+[\w./~$:=+@*,\"'”\[\]-]+){0,6}$")
_EN_WORDS = frozenset(
    """the a an of to in on for and or is are be by with from as at it this that these those which who you your
    can may will not no all any some each other file files user users system command commands group groups
    directory option shell program package used use using see section table note tip""".split()
)


# Table headers and yes/no cells are not names.
_TABLE_WORDS = frozenset("yes no n/a none true false size description package popcon key type meaning action value usage".split())


def _clean(v: str) -> str:
    return v.strip().strip(" \"'“”‘’「」『』,，。.;；:：()（）")


def command_spans(text: str) -> list[tuple[str, float]]:
    """A command on a code line (after a ``$``/``#`` prompt, or a bare command-like line), a quoted
    command in prose, or a man-page reference (``mount(8)`` → ``mount``)."""
    out: list[tuple[str, float]] = []
    t = text.strip()
    m = _PROMPT.match(t)
    if m:
        cmd = t[m.end():].split(" # ", 1)[0].strip()
        if cmd:
            out.append((cmd, 1.0))
    elif _CODEY.match(t) and t[:1].isalpha() and not re.search(rf"[{CJK}]", t) and len(t) <= 60:
        words = t.lower().split()
        if len(words) >= 2 and not any(w in _EN_WORDS for w in words) or (len(words) == 1 and re.search(r"[-./]", t) is None and len(t) > 1):
            out.append((t, 0.7))
    for m in _QUOTES.finditer(t):
        q = _clean(m.group(1))
        # "type "reset"", "issue "clear"", 输入“reset”: the quote is what to run.
        told = re.search(r"(\btype|\brun|\bissue|\benter|\bexecute|\bvia command|输入|执行|运行)\s*$", t[: m.start()], re.I)
        if q and re.match(r"^[a-z][\w.+-]*(?:\s+\S+){0,5}$", q) and not re.search(rf"[{CJK}]", q):
            # ”su -l” is a command (an argument with -, /, = or .); a quoted single word, or words
            # without one (OCR's "st rictat ime"), are as often a value or a name.
            args = q.split()[1:]
            out.append((q, 0.85 if told or any(re.search(r"^-|[/=.]", a) for a in args) else 0.5))
        elif told and re.fullmatch(r"/[\w.+-]+(?:/[\w.+-]+)+", q):
            out.append((q, 0.85))  # via command "/usr/bin/editor"
    for name, _sec in _MANREF.findall(t):
        out.append((name, 0.7))
    return out


def _ocr_joined(text: str) -> str:
    """OCR spaces inside paths and options undone: "~/ . bashrc" → "~/.bashrc", quoted "- l" → "-l"."""
    t = re.sub(r"(?<=[/~])\s+(?=[.\w])", "", text)
    t = re.sub(r"(?<=/\.)\s+(?=\w)", "", t)
    return _QUOTES.sub(lambda m: m.group(0).replace(" ", "") if re.fullmatch(r"-\s?-?\s?\w[\w-]*", m.group(1).strip()) else m.group(0), t)


def spans(text: str, atype: AnswerType) -> list[tuple[str, float]]:
    """Candidate values of type ``atype`` in one line, with their fit, best first; empty for the
    types answered by the line itself (definition, yes/no, list, general)."""
    t = text.strip()
    if atype in ("path", "option"):
        t = _ocr_joined(t)
    out: list[tuple[str, float]] = []
    if atype == "command":
        # "How do I get back to the GUI?" is answered by a key combination as often as by a command.
        out = command_spans(t) + [(v, 0.6 * f) for v, f in spans(t, "key")]
    elif atype == "option":
        for q in _QUOTES.findall(t):
            if _OPTION.fullmatch(_clean(q)) or re.fullmatch(r"ls\s+-\w+", _clean(q)):
                out.append((_clean(q), 1.0))
        out += [(m.group(1), 0.8) for m in _OPTION.finditer(t)]
        out += [(w, 0.5) for w in re.findall(r"(?<![\w-])([a-z]{4,}time|[A-Z]+:[A-Z]+)(?![\w])", t)]
    elif atype == "path":
        out = [(_clean(m.group(1)) if m.group(1) not in ("/", "../", "./") else m.group(1), 0.9)
               for m in _PATH.finditer(t) if len(m.group(1)) > 1 or t.strip() == "/"]
    elif atype == "version":
        # Not a section or table number ("Section 1.1.6", "第 1.2.3 节", "Table 1.9").
        out = [(m.group(1), 1.0) for m in _VERSION.finditer(t)
               if not re.search(r"(section|chapter|table|figure|第)\s*$", t[: m.start()], re.I) and not re.match(r"\s*[节章]", t[m.end():])
               and not re.fullmatch(r"\d{1,2}(?:\.\d{1,2}){1,3}", t.strip())
               and not (m.start() == 0 and re.match(rf"\s+[A-Z{CJK}]", t[m.end():]))]  # a numbered heading
    elif atype == "number":
        # Not a man page's section ("chmod(1)"); "一个" is as often "a" as "one".
        for m in _NUMBER.finditer(_MANREF.sub(lambda r: r.group(1) + "   ", t)):
            v = next(g for g in m.groups() if g)
            out.append((v.strip(), 0.9 if any(c.isdigit() for c in v) else 0.4 if v == "一" else 0.8))
    elif atype == "key":
        out = [(m.group(1), 1.0 if "-" in m.group(1) or "^" in m.group(1) else 0.8) for m in _KEY.finditer(t)]
    elif atype in ("group", "name"):
        # A table's first column, a quoted or man-page name, else an identifier-like word.
        words = t.split()
        if 1 <= len(words) <= 2 and _IDENT.fullmatch(words[0].lower()) and words[0].lower() not in _EN_WORDS | _TABLE_WORDS:
            out.append((words[0], 1.0 if len(words) == 1 else 0.8))
        for q in _QUOTES.findall(t):
            q = _clean(q)
            if q and len(q) <= 40 and not q.startswith(("/", "~", "-")):
                out.append((q, 0.7))
        out += [(name, 0.6) for name, _ in _MANREF.findall(t)]
        out += [(w, 0.5) for w in _IDENT.findall(t) if w not in _EN_WORDS and re.search(r"[-_.0-9]", w)]
        # "the dialout group"; in Chinese the name touches the characters before it ("被dialout 群组").
        out += [(w, 0.45) for w in re.findall(r"(?<![A-Za-z0-9_-])([a-z][a-z0-9]{1,15})\s+(?:group|群组|组)", t) if w not in _EN_WORDS]
        if atype == "name":
            out += [(m.group(0), 0.5) for m in re.finditer(r"\b(?:Table|表)\s*\d+\.\d+", t)]
    seen: set[str] = set()
    uniq = []
    for v, f in sorted(out, key=lambda x: -x[1]):
        k = squash(v)
        if k and k not in seen:
            seen.add(k)
            uniq.append((v, f))
    return uniq


_NAMES_COMMAND = re.compile(r"(\bcommands?\b|命令)", re.I)


def key_not_asked(value: str, atype: AnswerType, question: str) -> bool:
    """A key combination read as a command when the question names a command ("…from the command
    line", "用什么命令"): "How do I …" is answered by a key as often as by a command, this one is not."""
    return atype == "command" and _KEY.fullmatch(value.strip()) is not None and _NAMES_COMMAND.search(question) is not None


def in_question(value: str, question: str) -> bool:
    """The value is already in the question: it is the question's subject, not its answer
    ("mount" is not in "mounted", a word counts whole)."""
    v, q = squash(value).rstrip("/") or squash(value), squash(question)
    if not v:
        return False
    if re.fullmatch(r"[a-z0-9]\w*", v):
        return re.search(rf"(?<![a-z0-9]){re.escape(v)}(?![a-z0-9])", normalize(question)) is not None
    if v.startswith(("/", "~", "-")):
        # "/run" is not in "/var/run", "-l" is not in "-lu": a path or option counts whole.
        return re.search(rf"(?<![\w/.~-]){re.escape(v)}(?![\w-])", normalize(question)) is not None
    return v in q


TYPE_LABELS: dict[str, tuple[str, str]] = {
    "command": ("Command", "命令"), "option": ("Option", "选项"), "path": ("Path", "路径"), "version": ("Version", "版本"),
    "number": ("Number", "数值"), "key": ("Key", "按键"), "group": ("Group", "组"), "name": ("Name", "名称"),
    "yesno": ("Answer", "回答"), "definition": ("Answer", "回答"), "list": ("Answer", "回答"), "general": ("Answer", "回答"),
}


def type_label(atype: AnswerType, zh: bool) -> str:
    """The claim label for a typed answer: what the value is, not the question's words again."""
    en, cn = TYPE_LABELS[atype]
    return cn if zh else en


_LITERAL = re.compile(r"(?<![\w/.~-])((?:~|\.{1,2})?/[\w.*@+:/-]+|--?[A-Za-z][\w-]*|[\w.-]+\.(?:conf|sh|txt|gz|html|d))(?![\w-])")


def literals(question: str) -> list[str]:
    """Paths, options and file names the question quotes: a line holding one verbatim is about it."""
    return [m.group(1) for m in _LITERAL.finditer(question) if len(m.group(1)) > 2]
