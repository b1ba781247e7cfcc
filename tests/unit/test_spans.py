"""The answer-type model and span extraction of the extractive answerer (zh and en), without models."""

from __future__ import annotations

import pytest

from imgrag.agent.evidence import EvidenceLine, ImageInfo, best_lines, next_page_name
from imgrag.agent.planner import rule_plan, split_question
from imgrag.agent.spans import answer_type, in_question, spans


@pytest.mark.parametrize(
    ("question", "atype"),
    [
        ("Which command changes the group of a file?", "command"),
        ("How do I list installed packages?", "command"),
        ("怎么创建一个叫 fish 的练习账号？", "command"),
        ("修改文件所属的组用什么命令？", "command"),
        ("Which flag prints only the version?", "option"),
        ("ls 用哪个选项显示权限信息？", "option"),
        ("Which file holds the keyboard layout?", "path"),
        ("Where is the greeting message stored?", "path"),
        ("系统日志文件放在哪个目录？", "path"),
        ("Since which Linux version is relatime the default?", "version"),
        ("relatime 从哪个 Linux 版本开始成为默认行为？", "version"),
        ("How many virtual consoles are there?", "number"),
        ("/dev/sda 的主设备号是多少？", "number"),
        ("Which key quits Midnight Commander?", "key"),
        ("按什么键可以退出？", "key"),
        ("Which group may add printers?", "group"),
        ("Which port does the daemon listen on by default?", "number"),
        ("哪个组可以完全直接地访问串口？", "group"),
        ("Which package is a text-mode WWW browser?", "name"),
        ("What is /proc/kcore?", "definition"),
        ("ctime 表示什么时间？", "definition"),
        ("Is ctime the file creation time?", "yesno"),
        ("文件名区分大小写吗？", "yesno"),
        ("最常见的几种套接字有哪些？", "list"),
    ],
)
def test_answer_type(question: str, atype: str) -> None:
    assert answer_type(question) == atype


def test_spans_pick_the_value_of_the_asked_type() -> None:
    assert spans("$ dpkg -l", "command")[0][0] == "dpkg -l"
    assert spans("# deluser --remove-home fish", "command")[0][0] == "deluser --remove-home fish"
    assert spans("Type ”su -l” from any user shell prompt.", "command")[0][0] == "su -l"
    assert ("chgrp", 0.7) in spans("chgrp(1) is used from the file’s owner or root account", "command")
    assert spans("The daemon listens on port 8080 by default.", "number")[0][0] == "8080"
    assert spans("The keyboard layout is kept in /etc/default/keyboard.", "path")[0][0] == "/etc/default/keyboard"
    assert spans("Use -V to print only the version.", "option")[0][0] == "-V"
    assert spans("(default behavior since Linux 2.6.30)", "version")[0][0] == "2.6.30"
    assert spans("If you are in the GUI, press Ctrl-Alt-F3 to get a console.", "key")[0][0] == "Ctrl-Alt-F3"
    assert spans("dialout full and direct access to serial ports", "group") == [] or spans("dialout", "group")[0][0] == "dialout"
    assert spans("”/dev/sda” 的主设备号是 8，次设备号是 0。", "number")[0][0] == "8"
    assert spans("通过把“umask 002”写入 ~/.bashrc 文件打开 UPG。", "command")[0][0] == "umask 002"
    # Types answered by the line itself have no spans.
    assert spans("ctime is not file creation time", "yesno") == []


def test_a_value_already_in_the_question_is_not_its_answer() -> None:
    assert in_question("/etc/group", "Which command edits /etc/group?")
    assert not in_question("umount", "Which command detaches a mounted filesystem?")
    assert not in_question("mount", "Which command detaches a mounted filesystem?")  # "mounted" is another word
    assert in_question("fish", "怎么创建一个叫 fish 的练习账号？")


def _page(image_id: str, rows: list[str], path: str = "") -> ImageInfo:
    lines = [EvidenceLine(image_id=image_id, text=t, bbox=(50, 100 + 20 * i, 550, 114 + 20 * i), source="metadata") for i, t in enumerate(rows)]
    return ImageInfo(image_id=image_id, path=path or image_id, file=path or image_id, lines=lines)


def _answer(question: str, pages: list[ImageInfo]) -> str:
    sub = rule_plan(question).sub_questions[0]
    images = {p.image_id: p for p in pages}
    ev = [ln for p in pages for ln in p.lines]
    ranked = best_lines(sub, ev, images)
    return ranked[0].value if ranked else ""


def test_the_answer_on_the_line_after_the_matching_sentence() -> None:
    page = _page("a", ["Packages", "Use the following command to list installed packages:", "$ dpkg -l", "It prints one line a package."])
    assert _answer("How do I list installed packages?", [page]) == "dpkg -l"


def test_a_token_inside_the_line_not_the_sentence() -> None:
    page = _page("a", ["Networking", "The daemon listens on port 8080 by default unless configured.", "See the manual."])
    assert _answer("Which port does the daemon listen on by default?", [page]) == "8080"
    page = _page("b", ["键盘", "键盘布局保存在 /etc/default/keyboard 文件中。"])
    assert _answer("键盘布局保存在哪个文件？", [page]) == "/etc/default/keyboard"


def test_the_answer_at_the_top_of_the_next_page() -> None:
    first = _page("p1", ["Intro text about shells.", "More text here.", "Some other line.", "To delete the account and its home directory, type the following."],
                  path="/c/book-p041.png")
    second = _page("p2", ["Book 14 / 200", "# deluser --remove-home fish", "This removes the account."], path="/c/book-p042.png")
    assert _answer("How do I delete the account together with its home directory?", [first, second]) == "deluser --remove-home fish"


def test_next_page_name() -> None:
    assert next_page_name("/x/debian-reference.en-p029.png") == "/x/debian-reference.en-p030.png"
    assert next_page_name("/x/scan_0099.jpg") == "/x/scan_0100.jpg"
    assert next_page_name("/x/cover.png") is None


def test_a_list_inside_one_question_is_not_split() -> None:
    assert split_question("Members of which group may add, modify and remove printers?") == ["Members of which group may add, modify and remove printers?"]
    assert len(split_question("When was the supply agreement signed and who is Party B?")) == 2


def test_a_document_named_anywhere_restricts_every_part() -> None:
    for q in ("When was the supply agreement signed and who is Party B?", "Who is Party B of the supply agreement and when was it signed?"):
        plan = rule_plan(q)
        assert len(plan.sub_questions) == 2
        assert all(s.entities == ["supply agreement"] for s in plan.sub_questions), q
    plan = rule_plan("采购合同的乙方是谁和签订日期")
    assert all(s.entities == ["采购合同"] for s in plan.sub_questions)
    assert all(not s.entities for s in rule_plan("When was the contract signed and who is Party B?").sub_questions)


def test_a_group_name_touching_chinese_text() -> None:
    assert spans("• ”/dev/ttyS0”的主设备号是4，次设备号是64。它可以被dialout 群组的用户读写。", "group")[0][0] == "dialout"
    assert spans("在现代 Linux系统中，处在”/dev”之下的文件系统会自动被 udev()机制填充。", "name")[0][0] == "udev"
