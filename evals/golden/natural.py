"""`natural`: questions written by hand, the way people ask them, over the `docqa` corpus.

The `docqa` set's questions are generated from templates ("Which section … is “title”?", six key
words of a sentence); an agent tuned on them can score well and still fail a person who asks "How do I
delete the fish account together with its home directory?". These questions were written by reading
the rendered Debian Reference pages (English and Simplified Chinese, the same pages the `docqa`
corpus rasterises), in varied wording, and typed by the answer they want: a command, an option, a
path, a version, a number, a name, a group, a key, a definition, yes/no or a list. Kinds
``multipage`` (the question's context ends one page and the answer starts the next) and ``two_pages``
(two pages each answer it) are named as such, with the answer type in ``atype``.

Every answer (or an alias) is checked against the page text when the set is built, so a typo in the
table fails the build instead of scoring 0. The set is split once, by a salted hash of the question id
(:func:`evals.splits.question_split`), into ``natural-dev`` (tune on it) and ``natural-heldout``
(report it; the code never reads its questions except to ask them).

Table format, one question a line: ``lang|pages|kind|question|answer|alias;alias``.
"""

from __future__ import annotations

from pathlib import Path

from imgrag.evals.datasets.docpages import DocPage, read_doc_pages
from imgrag.evals.splits import question_split

from . import GoldenItem
from .docqa import DocqaRecipe, build_corpus  # noqa: F401  (same corpus as docqa)

NAME = "natural"
STEMS = {"en": "debian-reference.en", "zh": "debian-reference.zh-cn"}

TABLE = """
en|29|key|How do I get to the text login prompt when I'm in a graphical desktop?|Ctrl-Alt-F3|
en|29|path|Where is the greeting message shown at login stored?|/etc/motd|
en|29|command|Which command does root use to create additional user accounts?|adduser|
en|29|yesno|Are Debian user names and passwords case sensitive?|case sensitive|
en|29,30|multipage|What kernel version does the example login banner show after penguin logs in?|5.10.0-6-amd64|
en|30|path|Where are the exact distribution terms of each program described?|/usr/share/doc/*/copyright|
en|30|list|Which terminal emulator programs give me a shell prompt under the GUI?|gnome-terminal|rxvt;xterm
en|30|definition|What else is the root account called?|superuser|privileged user
en|30|yesno|Is it ok to share the root password with others?|Never share the root password|never
en|31|command|Which command gets me a root shell without keeping my current environment?|su -l|
en|31|number|How many virtual consoles does a default Debian system offer?|six|6
en|31|command|How can I switch to virtual console 3 from the command line?|chvt 3|
en|31|key|What key combination closes the shell at the command prompt?|Ctrl-D|^D
en|31|name|Under which display manager's prompt must I never log in as root?|gdm3|
en|29,31|two_pages|Which keys bring me back to the GUI from a text console?|F2|Ctrl-Alt-F2;Alt-F2
en|32|command|What's the command to shut down the machine in normal multiuser mode?|shutdown -h now|
en|32|command|How do I power off from single-user mode?|poweroff -i -f|
en|32|command|The screen went berserk after I cat'ed a binary file. What should I type?|reset|
en|32|list|Which packages does the manual suggest a newbie installs with apt-get?|mc vim sudo aptitude|
en|32|number|How big is the emacs-nox package according to the table?|33819|
en|32|name|Which package is a text-mode WWW browser?|w3m|
en|32,33|multipage|Which of the informative documentation packages is the Debian FAQ?|debian-faq|
en|33|name|Which package holds the Debian Policy Manual?|debian-policy|
en|33|command|How do I make a training account called fish?|adduser fish|
en|33|command|How do I delete the fish account together with its home directory?|deluser --remove-home fish|
en|33|path|Which file gets the penguin ALL=(ALL) ALL line for sudo?|/etc/sudoers|
en|33|option|What must the sudoers line say so penguin needs no password at all?|NOPASSWD:ALL|
en|34|definition|What should I use instead of sudo to give access to limited devices and files?|group|
en|34|number|Which section covers the shell mechanism?|1.5|
en|34|command|Which command attaches a filesystem found on a device to the big file tree?|mount|
en|34|command|Which command detaches a mounted filesystem again?|umount|
en|34|path|Where can I find the supported mount options for each filesystem?|/usr/share/doc/linux-doc-*/Documentation/filesystems/|
en|35|path|Which directory holds the system log files?|/var/log/|
en|35|path|Where are system wide configuration files kept?|/etc/|
en|35|path|What fully-qualified filename does the manual use as its example?|/usr/share/keytables/us.map.gz|
en|35|path|Which directory name refers to the parent directory?|../|
en|35|list|What are good characters to separate words in a file name?|period, hyphen, and underscore|hyphen;underscore
en|36|definition|What is the data structure that describes a file's owner, group and access time called?|inode|
en|36|definition|What does the execute permission on a directory allow the owner to do?|access files in the directory|
en|36|option|Which ls option shows permission information?|-l|
en|37|command|Which command changes the group of a file?|chgrp|
en|37|command|Which command changes the owner of a file?|chown|
en|37|command|How do I make a whole directory tree owned by user foo and group bar?|chown -R foo:bar .|
en|37|definition|What does setting the sticky bit on a directory prevent?|removed by a user who is not the owner|
en|37|group|Which group owns /etc/shadow in the example listing?|shadow|
en|38|number|How many digits does chmod's numeric mode use?|3 to 4|
en|38|number|What umask value makes new files writable by the group?|0002|
en|38|name|What scheme does Debian use for groups by default?|user private group|UPG
en|38|command|How do I enable UPG in my ~/.bashrc?|umask 002|
en|38|name|Which table gives umask value examples?|Table 1.6|
en|39|command|Which command edits /etc/group?|sudo vigr|vigr
en|39|command|How do I edit /etc/gshadow?|sudo vigr -s|vigr -s
en|39|group|Which group gives full and direct access to serial ports?|dialout|
en|39|group|Which group must I be in to create a Dialup IP connection to trusted peers?|dip|
en|39|group|Members of which group may add, modify and remove printers?|lpadmin|
en|39|group|Which group can read the system monitoring logs?|adm|
en|39|name|Which package provides the Users and Groups document?|base-passwd|
en|39|command|What line do I add to /etc/pam.d/common-auth to add users to groups at login?|auth optional pam_group.so|
en|39,43|two_pages|Which group do I need to read and write the serial port /dev/ttyS0?|dialout|
en|39,40|multipage|What does ctime stand for among the three types of file timestamps?|file status change time|
en|39,40|multipage|Which ls option shows the last file access time?|ls -lu|-lu
en|40|version|Since which Linux version is relatime the default behaviour?|2.6.30|
en|40|yesno|Is ctime the file creation time?|not file creation time|not
en|40|option|Which mount option keeps reads from changing the atime?|noatime|
en|40|command|Which command changes the timestamps of existing files?|touch|
en|41|command|How do I make a symbolic link bar pointing to foo?|ln -s foo bar|
en|41|option|Which ls option reveals the inode number?|-i|
en|41|definition|What access permissions does a symlink nominally always have?|rwxrwxrwx|
en|41|number|At what number does the link count of a new directory start?|2|
en|42|command|Which command creates a named pipe?|mkfifo|
en|42|number|How big is a named pipe?|zero|
en|42|command|What command gives an overview of the sockets open on a system?|netstat -an|
en|42|list|What are the two most common kinds of socket?|Internet socket|Unix domain socket
en|42|path|Which device file represents the console?|/dev/console|
en|43|number|What is the major device number of /dev/sda?|8|
en|43|number|What minor device number does /dev/ttyS0 have?|64|
en|43|definition|What do you get when you read /dev/zero?|NUL|\0
en|43|path|Which special file returns the disk-full error when written?|/dev/full|
en|43|name|What mechanism populates /dev automatically on modern Linux?|udev|
en|43|path|Which printer device can I dump a text file to?|/dev/lp0|
en|43,44|multipage|Which directory has one subdirectory for each running process?|/proc|
en|44|path|Which file is the preload configuration of sysctl?|/etc/sysctl.conf|
en|44|definition|What is /proc/kcore?|copy of the content of your computer’s memory|content of your computer's memory
en|44|path|Where did /var/run move to?|/run|
en|44|path|What replaces /var/lock?|/run/lock|
en|44|command|How do I install Midnight Commander?|sudo apt-get install mc|apt-get install mc
en|45|path|Which script should ~/.bashrc source so MC cds to its directory on exit?|/usr/lib/mc/mc.sh|
en|45|option|Which option to MC may fix garbage characters on screen?|-a|
en|45|key|Which key opens MC's internal editor?|F4|
en|45|key|Which key quits Midnight Commander?|F10|
en|46|command|How can I open a file straight in MC's editor?|mcedit|mc -e
en|46|key|In MC's internal editor, which key copies the selected area to the cursor?|F5|
en|46|name|Which environment variables decide which editor programs use?|$EDITOR|$VISUAL
en|46|command|Which command starts MC's viewer on a file?|mcview|mc -v
en|47|definition|What does MC do when I press Enter on an html file?|pipe content to web browser|
en|47|name|Which shell is the de facto standard?|bash|
en|47|name|Which shell is good for shell scripts according to the list of shells?|dash|Debian Almquist Shell
en|48|path|Which file do I edit to customize bash?|~/.bashrc|
en|48|command|Which command can disable the Ctrl-S terminal feature?|stty|
en|48,49|multipage|Which key erases the line before the cursor in bash?|Ctrl-U|
en|48,49|multipage|Which key starts an incremental command history search in bash?|Ctrl-R|
en|49|definition|What does Ctrl-Z do?|temporarily stop program|
en|49|name|What daemon has to run to use a mouse on Linux character consoles?|gpm|
en|49|option|Which option of less enables ANSI color escape sequences?|-R|
en|50|number|How many lines of the Vim help should I read at least?|35|
en|50|command|How do I change the system default editor?|sudo update-alternatives --config editor|update-alternatives --config editor
en|50|path|Which command gives unified access to the system default editor?|/usr/bin/editor|
zh|29|key|图形界面下怎么切换到字符登录界面？|Ctrl-Alt-F3|
zh|29|path|登录时显示的欢迎信息存在哪个文件里？|/etc/motd|
zh|29|command|额外的用户账号用什么命令创建？|adduser|
zh|29|version|示例登录信息里显示的内核版本是多少？|5.10.0-6-amd64|
zh|30|list|GUI 下能用哪些终端程序打开 shell？|gnome-terminal|rxvt;xterm
zh|30|definition|root 账户也被叫做什么？|超级用户|特权用户
zh|30|yesno|root 密码可以和别人共享吗？|千万不要|
zh|30,31|multipage|用 su -l 切换到 root 会保留当前用户的环境设定吗？|不会保存|
zh|31|number|默认的 Debian 系统有几个虚拟控制台？|6|
zh|31|command|在命令行里怎么切换到控制台 3？|chvt 3|
zh|31|key|怎么关闭 shell 活动？|Ctrl-D|^D
zh|31|command|普通多用户模式下用什么命令关机？|shutdown -h now|
zh|31|command|单用户模式下怎么关闭系统？|poweroff -i -f|
zh|31|name|不能在哪个显示管理器的提示符下用 root 登录？|gdm3|
zh|32|command|屏幕显示乱了该输入什么命令恢复？|reset|
zh|32|command|清屏用哪个命令？|clear|
zh|32|name|哪个软件包是文本模式的万维网浏览器？|w3m|
zh|32|name|Debian 常见问题在哪个软件包里？|debian-faq|
zh|32|command|怎么创建一个叫 fish 的练习账号？|adduser fish|
zh|32|number|emacs-nox 软件包有多大？|33819|
zh|32,33|multipage|练习完以后怎么删除 fish 账号和它的主目录？|deluser --remove-home fish|
zh|33|option|要让 penguin 不输密码就能用 sudo，sudoers 里要写什么？|NOPASSWD:ALL|
zh|33|path|sudo 的配置写到哪个文件里？|/etc/sudoers|
zh|33|name|关心系统漏洞的人应该去读哪本手册？|Debian 安全手册|
zh|33|number|shell 机制在第几节讲？|1.5|
zh|34|command|把设备上的文件系统挂到文件树上用什么命令？|mount|
zh|34|command|用哪个命令把文件系统分离？|umount|
zh|34|yesno|文件名区分大小写吗？|区分大小写|
zh|34|path|root 用户的家目录是哪个？|/root|
zh|34|path|书里举的全限定文件名例子是什么？|/usr/share/keytables/us.map.gz|
zh|35|path|系统日志文件放在哪个目录？|/var/log/|
zh|35|path|系统范围的配置文件放在哪？|/etc/|
zh|35|definition|描述文件所有者、所属组等属性的数据结构叫什么？|inode|
zh|35|path|文件系统层次标准的文档在哪个文件？|/usr/share/doc/debian-policy/fhs/fhs-2.3.txt.gz|
zh|35,36|multipage|对目录来说，可写权限允许所有者做什么？|添加或删除目录里面的文件|
zh|36|option|ls 用哪个选项显示权限信息？|-l|
zh|36|command|修改文件所属的组用什么命令？|chgrp|
zh|36|command|哪个命令修改文件的所有者？|chown|
zh|36|command|怎么让一个目录树归用户 foo 所有并共享给组 bar？|chown -R foo:bar .|
zh|37|definition|给目录设置粘滞位有什么用？|不被其所有者之外的一个用户删除|
zh|37|group|例子里 /etc/shadow 属于哪个组？|shadow|
zh|37|number|chmod 的数字模式用几位八进制数？|3 到 4 位|
zh|37|command|shell 脚本里要获取 ls -l 显示的信息应该用哪些命令？|stat|test;readlink
zh|37|command|新建文件的权限受哪个 shell 内置命令限制？|umask|
zh|37,38|multipage|umask 设成多少可以让同组用户也能写？|0002|
zh|38|command|怎么打开 UPG？|umask 002|
zh|38|command|编辑 /etc/group 用什么命令？|sudo vigr|vigr
zh|38|group|哪个组可以完全直接地访问串口？|dialout|
zh|38|group|哪个组的成员能添加、修改、移除打印机？|lpadmin|
zh|38|group|系统监控日志由哪个组访问？|adm|
zh|38|group|CD-ROM 驱动器对应的是哪个组？|cdrom|
zh|38,42|two_pages|要读写串口 /dev/ttyS0 需要加入哪个组？|dialout|dailout
zh|39|definition|ctime 表示什么时间？|文件状态修改时间|
zh|39|option|查看文件最后被访问的时间用 ls 的哪个参数？|ls -lu|-lu
zh|39|version|relatime 从哪个 Linux 版本开始成为默认行为？|2.6.30|
zh|39|option|哪个挂载选项可以让读文件时不改变 atime？|noatime|
zh|39|command|修改已存在文件的时间戳用什么命令？|touch|
zh|39|name|由系统提供的用户和组的完整列表由哪个包提供？|base-passwd|
zh|40|command|怎么创建一个指向 foo 的符号链接 bar？|ln -s foo bar|
zh|40|number|新建目录的链接数从几开始？|2|
zh|40|definition|符号链接名义上总是有什么访问权限？|rwxrwxrwx|
zh|41|command|创建命名管道用什么命令？|mkfifo|
zh|41|number|管道的大小是多少？|零|
zh|41|command|用什么命令查看系统打开了哪些套接字？|netstat -an|
zh|41|path|控制台用哪个设备文件描述？|/dev/console|
zh|41|list|最常见的两种套接字是什么？|互联网套接字|UNIX 域套接字
zh|41,42|multipage|平时访问打印机应该用什么命令？|lp(1)|lp
zh|42|number|/dev/sda 的主设备号是多少？|8|
zh|42|number|/dev/ttyS0 的次设备号是多少？|64|
zh|42|path|写入时返回磁盘已满错误的是哪个设备文件？|/dev/full|
zh|42|name|/dev 下的文件系统由什么机制自动填充？|udev|
zh|42|definition|读取 /dev/urandom 会返回什么？|伪随机数|
"""


class NaturalRecipe(DocqaRecipe):
    """The docqa corpus recipe: the natural questions are asked over the same pages."""


def _squash(text: str) -> str:
    import re

    return re.sub(r"\s+", "", text).lower().replace("’", "'")


def items(pages: list[DocPage] | None = None) -> list[GoldenItem]:
    """Every natural question; with ``pages``, each answer is checked to be printed on a relevant page."""
    text = {p.file: _squash(p.text) for p in pages or []}
    out: list[GoldenItem] = []
    count: dict[str, int] = {}
    for n, line in enumerate(TABLE.strip().splitlines(), start=1):
        lang, pages_s, kind, query, answer, aliases_s = line.split("|")
        count[lang] = count.get(lang, 0) + 1
        files = [f"{STEMS[lang]}-p{int(p):03d}.png" for p in pages_s.split(",")]
        aliases = [a for a in aliases_s.split(";") if a]
        it = GoldenItem(id=f"{NAME}/{lang}-{count[lang]:03d}", query=query, relevant=files, answer=answer,
                        answer_aliases=aliases, lang=lang, kind=kind, split=question_split(f"{NAME}/{lang}-{count[lang]:03d}"))
        if text:
            have = [text.get(f, "") for f in files]
            if not any(_squash(a) in t for a in [answer, *aliases] for t in have):
                raise ValueError(f"natural line {n}: {answer!r} is not printed on {files}")
        out.append(it)
    return out


def golden(out_dir: str | Path, recipe: DocqaRecipe | None = None, split: str | None = None) -> list[GoldenItem]:
    """The natural questions over a built docqa corpus, all of them or one split (``dev`` / ``heldout``)."""
    got = items(read_doc_pages(Path(out_dir) / "meta" / "docpages.jsonl"))
    return [it for it in got if split is None or getattr(it, "split", None) == split]
