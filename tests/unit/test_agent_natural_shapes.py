"""Extraction shapes of natural questions, on rows as the indexer's OCR read them (text and boxes)
from the rasterised Debian Reference pages the natural golden sets are built on (en p45, p47, p33;
zh-cn p33), without models."""

from __future__ import annotations

from imgrag.agent.evidence import EvidenceLine, ImageInfo, best_lines, page_lang, running_lines
from imgrag.agent.planner import detect_intent, rule_plan

Row = tuple[str, tuple[int, int, int, int]]

MC_KEYS: list[Row] = [  # en p45, "Table 1.9: Key bindings of MC" (two columns far apart)
    ("key", (87, 729, 120, 751)), ("key binding", (305, 730, 383, 750)),
    ("F1", (86, 746, 116, 765)), ("help menu", (305, 747, 372, 767)),
    ("F3", (86, 764, 116, 783)), ("internal file viewer", (305, 764, 419, 781)),
    ("F4", (86, 779, 116, 798)), ("internal editor", (307, 780, 391, 797)),
    ("F9", (86, 796, 116, 816)), ("activate pull down menu", (307, 798, 449, 814)),
    ("F10", (86, 811, 124, 832)), ("exit Midnight Commander", (307, 814, 459, 829)),
    ("Tab", (86, 829, 123, 847)), ("move between two windows", (307, 831, 470, 847)),
]
SHELLS: list[Row] = [  # en p47, "List of shell programs": the description spans two lines, centred on its row
    ("package", (85, 619, 146, 639)), ("popcon", (229, 620, 279, 639)), ("size", (318, 619, 348, 636)),
    ("POSIX shell", (373, 619, 453, 636)), ("description", (463, 619, 536, 637)),
    ("bash", (90, 643, 130, 662)), ("V:821, I:999", (230, 643, 305, 661)), ("7163", (319, 643, 355, 661)),
    ("Yes", (372, 642, 402, 662)), ("Bash: the GNU Bourne Again SHell (de facto", (463, 635, 724, 652)),
    ("standard)", (463, 652, 520, 670)),
    ("bash-completion", (91, 669, 221, 686)), ("V:31, I:926", (231, 676, 299, 694)), ("1463", (318, 674, 355, 695)),
    ("N/A", (372, 676, 405, 695)), ("programmable completion for the bash shell", (463, 676, 714, 695)),
    ("dash", (90, 701, 131, 719)), ("V:894, 1:995", (231, 702, 307, 719)), ("191", (320, 702, 347, 719)),
    ("Yes", (373, 701, 402, 721)), ("Debian Almquist Shell, good for shell script", (465, 703, 715, 719)),
    ("zsh", (89, 717, 123, 737)), ("V:37,I:73", (231, 717, 293, 735)), ("2436", (318, 717, 354, 735)),
    ("Yes", (373, 717, 402, 737)), ("Z shell: the standard shell with many enhancements", (465, 719, 757, 734)),
]
SUDO_EN: list[Row] = [  # en p33
    ("Alternatively, it is also common to do as follows to let the non-privileged user, e.g. penguin, to gain administrative privilege",
     (76, 685, 789, 703)),
    ("without any password.", (75, 701, 206, 720)),
    ('# echo "penguin ALL=(ALL) NOPASSWD:ALL" >> /etc/sudoers', (76, 726, 499, 743)),
    ("This trick should only be used for the single user workstation which you administer and where you are the only user.",
     (76, 764, 725, 781)),
]
SUDO_ZH: list[Row] = [  # zh-cn p33, the same paragraph
    ("另外，可以使用下列命令使非特权用户（例如用户penguin）无需密码就获得管理员权限。", (77, 332, 631, 351)),
    ('# echo"penguin ALL=(ALL) NOPASSWD:ALL" >> /etc/sudoers', (77, 360, 497, 374)),
    ("这些技巧只对你管理的单用户工作站中那个唯一的用户有用。", (77, 395, 445, 412)),
]


def _page(image_id: str, rows: list[Row]) -> ImageInfo:
    lines = [EvidenceLine(image_id=image_id, text=t, bbox=b, source="metadata", confidence=0.9) for t, b in rows]
    return ImageInfo(image_id=image_id, path=image_id, file=image_id, lines=lines, ocr_text="\n".join(t for t, _ in rows))


def _best(question: str, *pages: ImageInfo) -> tuple[str, str]:
    """(value, image id) of the best answer over the pages, ranked in the given order."""
    sub = rule_plan(question).sub_questions[0]
    evidence = [ln.model_copy(update={"rank": r}) for r, p in enumerate(pages) for ln in p.lines]
    ranked = best_lines(sub, evidence, {p.image_id: p for p in pages})
    return (ranked[0].value, ranked[0].line.image_id) if ranked else ("", "")


def test_the_key_column_far_left_of_the_matching_cell() -> None:
    page = _page("en-p045", MC_KEYS)
    assert _best("Which key quits Midnight Commander?", page)[0] == "F10"
    assert _best("Which key opens MC's internal editor?", page)[0] == "F4"


def test_a_two_line_cell_and_the_first_column_past_other_columns() -> None:
    page = _page("en-p047", SHELLS)
    assert _best("Which shell is the de facto standard?", page)[0] == "bash"
    assert _best("Which shell is good for shell scripts according to the list of shells?", page)[0] == "dash"


def test_the_page_in_the_question_language_is_quoted() -> None:
    en, zh = _page("en-p033", SUDO_EN), _page("zh-p033", SUDO_ZH)
    assert (page_lang(en), page_lang(zh)) == ("en", "zh")
    # The Chinese page ranks first in the search; the English question is answered from the English page.
    assert _best("Which file gets the penguin ALL=(ALL) ALL line for sudo?", zh, en) == ("/etc/sudoers", "en-p033")
    assert _best("sudo 的配置写到哪个文件里？", en, zh) == ("/etc/sudoers", "zh-p033")


def test_when_as_a_condition_does_not_make_a_date_question() -> None:
    assert detect_intent("How do I get to the text login prompt when I'm in a graphical desktop?") == "general"
    assert detect_intent("What happens when the disk is full?") == "general"
    assert detect_intent("When was the supply agreement signed?") == "date"
    assert detect_intent("合同什么时候签订的") == "date"


OWNERS_ZH: list[Row] = [  # zh-cn p36: one line, three commands, one sentence each
    ("Table 1.4: “ls -l”输出的第一个字符列表", (295, 625, 569, 644)),
    ("chown(1)用于 root 账户修改文件的所有者。chgrp(1)用于文件的所有者或 root 账户修改文件所属的组。chmod(1)用", (78, 660, 788, 677)),
    ("于文件的所有者或root账户修改文件和文件夹的访问权限。操作一个foo文件的基本语法如下。", (77, 676, 663, 694)),
]
SANE_CONSOLE_EN: list[Row] = [  # en p32
    ("1.1.9 Recovering a sane console", (75, 408, 348, 427)),
    ('When the screen goes berserk after doing some funny things such as "cat some-binary- file", type "reset" at the', (77, 443, 789, 460)),
    ('command prompt. You may not be able to see the command echoed as you type. You may also issue "c lear" to clean up the',
     (75, 461, 789, 478)),
    ("screen.", (75, 479, 120, 495)),
]
SANE_CONSOLE_ZH: list[Row] = [  # zh-cn p32
    ("1.1.9 恢复一个正常的控制台", (76, 109, 298, 127)),
    ("当做了一些滑稽的事(例如“cat二进制文件”)后，屏幕会发狂，你可以在命令行输入“reset”。你可能无法在屏", (78, 147, 789, 164)),
    ("幕上看到你输入的命令。你也可以输入“clear”来清屏。", (76, 163, 431, 182)),
    ("1.1.10 建议新手安装的额外软件包", (76, 211, 342, 229)),
]
EDITOR_EN: list[Row] = [  # en p50
    ("1.4.7 Setting a default text editor", (76, 510, 348, 527)),
    ("Debian comes with a number of different editors. We recommend to install the vim package, as mentioned above.", (75, 543, 712, 561)),
    ('Debian provides unified access to the system default editor via command "/usr/bin/editor” so other programs (e.g.,',
     (75, 565, 789, 586)),
    ("repor tbug(1)) can invoke it. You can change it by the following.", (78, 586, 454, 600)),
    ("$ sudo update-alternatives --config editor", (76, 609, 393, 623)),
]


def test_the_value_of_the_sentence_that_matches() -> None:
    assert _best("修改文件所属的组用什么命令？", _page("zh-p036", OWNERS_ZH))[0] == "chgrp"


def test_the_quoted_word_one_is_told_to_type() -> None:
    assert _best("The screen went berserk after I cat'ed a binary file. What should I type?", _page("en-p032", SANE_CONSOLE_EN))[0] == "reset"
    # "命令" names the answer's type: the line that says it is not the better for it.
    assert _best("清屏用哪个命令？", _page("zh-p032", SANE_CONSOLE_ZH))[0] == "clear"
    assert _best("Which command gives unified access to the system default editor?", _page("en-p050", EDITOR_EN))[0] == "/usr/bin/editor"


CONSOLE_EN46: list[Row] = [  # en p46 (MC's editor): a key that switches consoles, no command
    ("This is not a multi-window editor, but one can use multiple Linux consoles to achieve the same effect. To copy between windows,",
     (76, 511, 789, 528)),
    ('use Alt-Fn keys to switch virtual consoles and use "File → Insert file" or "File → Copy to file" to move a portion of a file to another',
     (75, 527, 789, 543)),
    ("file.", (74, 542, 104, 563)),
]
CONSOLE_EN31: list[Row] = [  # en p31: the command on the line after the sentence
    ("virtual console 2, by pressing Alt-F2.", (76, 612, 282, 629)),
    ("You can alternatively change to another virtual console, e.g. to the console 3, from the commandline.", (76, 637, 657, 654)),
    ("# chvt 3", (76, 662, 138, 676)),
    ("1.1.7", (76, 713, 118, 732)),
]
UDEV_ZH42: list[Row] = [  # zh-cn p42: OCR lost the man page section of "udev(7)"
    ("在现代 Linux系统中，处在”/dev”之下的文件系统会自动被 udev()机制填充。", (78, 429, 560, 445)),
]
MC_ZH45: list[Row] = [  # zh-cn p45: a quoted key name in a line about file systems
    ("MC能够跨因特网访问文件。在菜单按F9,”Enter”和”h”来激活Shell文件系统。按”sh://[user@]machine[:options]/[", (76, 600, 789, 617)),
]


def test_a_key_is_not_the_command_a_question_names() -> None:
    # "How can I …" takes a key as an answer, unless the question asks for a command in so many words.
    en46, en31 = _page("en-p046", CONSOLE_EN46), _page("en-p031", CONSOLE_EN31)
    assert _best("How can I switch to virtual console 3 from the command line?", en46, en31) == ("chvt 3", "en-p031")
    assert _best("How can I switch virtual consoles in the editor?", en46)[0] == "Alt-Fn"


def test_a_man_page_name_whose_section_ocr_lost() -> None:
    zh45, zh42 = _page("zh-p045", MC_ZH45), _page("zh-p042", UDEV_ZH42)
    assert _best("/dev 下的文件系统由什么机制自动填充？", zh42, zh45) == ("udev", "zh-p042")


def test_a_running_header_is_never_the_answer() -> None:
    # zh-cn p33 and p42: every page starts with "Debian 参考手册"; it reads as a name ("Debian") and as
    # the first row of the next page, but names the book.
    header: Row = ("Debian 参考手册", (77, 48, 179, 65))
    p33 = _page("zh-p033", [header, ("有一些漏洞可以利用，但关心这些问题的人不应该阅读这一节，而应该去阅读Debian安全手册。", (78, 874, 601, 890))])
    p42 = _page("zh-p042", [header, ("1.2.12 特殊设备文件", (76, 217, 240, 237))])
    p33, p42 = (p.model_copy(update={"height": 1170}) for p in (p33, p42))
    assert running_lines({p.image_id: p for p in (p33, p42)}) == {"debian参考手册"}
    value, image = _best("关心系统漏洞的人应该去读哪本手册？", p33, p42)
    assert "Debian安全手册" in value and image == "zh-p033"
    # One page alone has no running header to tell.
    assert running_lines({p33.image_id: p33}) == set()


LS_TYPES_ZH36: list[Row] = [  # zh-cn p36, the end of "Table 1.4" and its caption below it
    ("C", (90, 532, 106, 548)), ("字符设备节点", (374, 531, 460, 548)),
    ("b", (86, 548, 106, 566)), ("块设备节点", (371, 546, 448, 567)),
    ("p", (89, 567, 106, 584)), ("命名管道", (374, 564, 434, 582)),
    ("S", (92, 584, 105, 598)), ("套接字", (373, 581, 419, 599)),
    ("Table 1.4: “ls -l”输出的第一个字符列表", (295, 624, 569, 644)),
]
MKFIFO_ZH41: list[Row] = [  # zh-cn p41
    ("法功能一样。然而，一旦管道有了名称，这两个进程就可以不必在同一个命令行，甚至由同一个用户运行。管道是", (77, 600, 789, 617)),
    ("UNIX 的一个非常有影响力的创新。", (77, 617, 300, 634)),
    ("尝试下列例子", (77, 641, 170, 658)),
    ("$ cd; mkfifo mypipe", (77, 666, 230, 681)),
]


def test_a_caption_below_a_table_answers_nothing_above_it() -> None:
    # "命名管道" is a cell of the table of `ls -l` file types; the caption under the table quotes
    # "ls -l", which is not how to create one.
    zh41, zh36 = _page("zh-p041", MKFIFO_ZH41), _page("zh-p036", LS_TYPES_ZH36)
    assert _best("创建命名管道用什么命令？", zh41, zh36)[1] == "zh-p041"
    assert _best("创建命名管道用什么命令？", zh36)[0] != "ls -l"
