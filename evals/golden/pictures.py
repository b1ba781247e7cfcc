"""`pictures`: descriptions of pictures written by hand, the way people search for them, over the `clipart` corpus.

The `clipart` set's queries are openclipart titles and keywords ("Capitello modanatura", "Bobi",
"arrow-down-purple") and its Chinese version word-by-word dictionary glosses of them ("箭下紫"): a
figure on them measures partly the titles and the glossary. These descriptions were written by looking
at the 240 pictures of the `clipart` corpus on numbered contact sheets (no file names, titles or
keywords shown, and before any search result was seen), one in English and one in Chinese for each of
228 pictures (12 too small or unclear to describe were left out), each language written on its own,
not translated from the other: what the picture shows, as a person who saw it would type it ("green
jeep with big tyres", "绿色越野吉普车"). A picture is described as it looks, even where its title says
otherwise (a fir tree drawn like a yellow pinwheel is "yellow pinwheel"). A description that fits
several pictures names them all (the last field).

The set is split once by picture (both languages of a picture in the same half), by a salted hash
(:func:`evals.splits.question_split`), into ``pictures-dev`` (tune on it) and ``pictures-heldout``
(report it; the code never reads its queries except to ask them). Every file named must be in the
built corpus, so a renamed picture fails the build instead of scoring 0.

Table format, one picture a line: ``file|english|chinese|also relevant;...``.
"""

from __future__ import annotations

from pathlib import Path

from imgrag.evals.splits import question_split
from imgrag.indexing.errors import ImgragError

from . import GoldenItem
from .clipart import ClipartRecipe, build_corpus  # noqa: F401  (same corpus as clipart)

NAME = "pictures"

TABLE = """
a_simple_pig_01.png|black pig head icon|黑色的猪头图标|
aglio_architetto_frances_01.png|garlic bulb with cloves|大蒜|
alarm_clock_gerald_g._01.png|green alarm clock on a shelf|绿色的闹钟|
albania.png|Albania flag|阿尔巴尼亚国旗|
an_apple_01.png|red apple with a green leaf|带叶子的红苹果|applf.png;cartoon_apple_k_yager_01.png
analisi_del_sangue_archi_01.png|syringe and test tubes of blood|注射器和装血的试管|
andorra.png|Andorra flag|安道尔国旗|
angel_01.png|blue wave with a small ball|蓝色波浪和一个小球|
angry_punk_dirk_struve_.png|cartoon guy with spiky hair screaming|头发竖起来大叫的男人|
apple_with_worm_dan_gerh_01.png|apple with a worm coming out|被虫子咬过的苹果|
armenia.png|red blue orange color block|红蓝橙三色块|
arrow-down-purple_benji__01.png|purple down arrow|紫色向下箭头|
arrow-down-yellow_benji__01.png|yellow green arrow pointing down|黄绿色的向下箭头|
arrow-left-purple_benji__01.png|pink left arrow|粉色向左的箭头|
arrow-right-green_benji__01.png|green arrow pointing right|绿色向右箭头|
aussie_hat_01.png|brown bush hat|棕色的牛仔帽|
australia_victoria.png|blue flag with union jack crown and stars|带英国国旗和星星的蓝色旗子|
ayers_rock_ganson.png|Uluru red rock desert|澳大利亚沙漠里的红色巨石|
barbados.png|Barbados flag with trident|巴巴多斯国旗|
baseball_bat_ganson.png|wooden baseball bat|棒球棒|
bear_peterm_01.png|cartoon bear face|卡通熊脸|
binoculars_vladimir_hern_01.png|blue binoculars|蓝色望远镜|
biohazard_symbol_01.png|biohazard symbol|生物危害标志|
black_and_white_pawns_d_r.png|black and white chess pawns|黑白国际象棋兵|
black_and_white_queens_r.png|black and white chess rooks|黑白两个象棋棋子|black_and_white_pawns_d_r.png
blacksmiti_ganson.png|blacksmith hammering on an anvil|在铁砧上打铁的铁匠|
blots_jesper_zedlitz_01.png|yellow oval with spots cheese|黄色椭圆奶酪|
blowling_ball_01.png|black bowling ball rolling|滚动的保龄球|
blue_girl_dirk_struve_.png|anime girl with blue hair|蓝头发的动漫女孩|
bobi_architetto_francesc_01.png|bulldog with spiked collar|戴项圈的斗牛犬|
boombox_linda_kim_01.png|retro boombox radio drawing|老式录音机|
brain_jon_phillips_01.png|brain drawing|大脑线稿|brain_jon_phillips_03.png
brain_jon_phillips_03.png|outline of a human brain|人脑轮廓图|brain_jon_phillips_01.png
brazil_flag_rob_lucas_01.png|Brazil flag|巴西国旗|
bulgaria.png|green and red striped flag|绿红两色的旗子|
bull_utrescu_.png|black bull silhouette|黑色公牛剪影|
bunch_o_buttons_christop_.png|blue media player buttons play stop pause|蓝色播放暂停按钮|
busy_mom_with_child_and_01.png|stressed woman on the phone ironing with cat and dog|一边打电话一边熨衣服的女人|busy_mom_with_child_and_02.png
busy_mom_with_child_and_02.png|busy housewife ironing on the phone with a dog and cat|忙乱的家庭主妇，猫和狗|busy_mom_with_child_and_01.png
button-purple_benji_park_01.png|shiny pink round button|粉红色圆形按钮|
canada_northwest_territories.png|flag with a shield and blue side bars|两边蓝色中间盾徽的旗子|
candied_apples_ganson.png|candy apples on sticks|冰糖苹果|
capitello_modanatura_mo_01.png|greek column capital|希腊石柱|
card_figures_-_heart_01.png|red heart|红心|
carte_de_france_01.png|outline map of France|法国地图轮廓|
cartoon_apple_k_yager_01.png|small red apple|小红苹果|an_apple_01.png;applf.png
cartoon_vgcats_fanart_01.png|cartoon grey cat face|灰色卡通猫脸|
casco_con_microfono_arch_01.png|headset with microphone|带麦克风的耳机|
cavalletta_architetto_fr_01.png|green grasshopper|绿色蚱蜢|
cesto_architetto_frances_01.png|yellow shopping basket|黄色购物篮|
chat_icon_01.png|two people talking speech bubbles icon|两个人对话的图标|
chicken_burger.png|hamburger with lettuce and tomato|汉堡包|
chile.png|Chile flag|智利国旗|
cinepresa_architetto_fra_01.png|old movie camera|老式电影摄影机|
clipboard_01.png|empty clipboard|空白剪贴板|
coffee_jean_victor_balin_.png|cup of hot coffee icon|热咖啡杯图标|
colori_01.png|coloured pencils|彩色铅笔|
computer-aj_aj_ashton_01.png|desktop computer with monitor and keyboard|台式电脑|
construction_hammer_jon__01.png|claw hammer|锤子|
crazy_monkey_shandy_brow_01.png|monster face on a yellow star|黄色星星上的怪物|
cup_rollandin_francesco_.png|yellow mug|黄色的杯子|
czech_republic_map_lumen_01.png|map of the Czech Republic with cities|捷克地图|
dannebrog_split.png|red and white swallowtail flag|红白色燕尾旗|
deer_matt_todd_01.png|leaping deer silhouette|跳跃的鹿剪影|
demolizione_costruzione_01.png|building collapsing in dust|倒塌的大楼|
denmark_faroe.png|flag with a red cross on white and blue|白底红蓝十字旗|
dinosauro_architetto_fra_01.png|green stegosaurus dinosaur|绿色剑龙|
disability_sign_james_ki_01.png|wheelchair symbol|轮椅标志|
discordian_sacred_chao_01r.png|golden apple and pentagon in a circle|圆圈里的金苹果和五边形|
domo_kun_nicu_buculei_01.png|white monster with sharp teeth doodle|长着尖牙的白色小怪物|
douche_securite__yves_gu_01.png|emergency shower safety sign|紧急淋浴标志|
eiffel_tower_michael_ja_r.png|Eiffel tower|埃菲尔铁塔|
extremement_inflammable_01.png|extremely flammable warning sign|易燃品警告标志|
fall_scene_in_a_circle_a_01.png|autumn leaves landscape in a circle|秋天落叶风景|
finestre_sovrapposte_arc_01.png|two application windows icon|两个窗口图标|
finland_aaland.png|blue flag with yellow and red cross|蓝底黄红十字旗|
fireman_alarm_mimooh_01.png|tiny cartoon man with a bell|拿着铃铛的小人|
flag_of_padania_federico_01.png|green six-petal flower in a circle|绿色圆圈六瓣花|padania_ani_ani_01.png
flag_of_poland_marcin_wi_01.png|red and white horizontal flag|红白横条旗|
flowers_jonathan_dietric_01.png|bunch of yellow daisies|一束黄色的花|
flying_spaghetti_monste_01.png|flying spaghetti monster emblem|飞天意面神|
foglio_e_mondo_architett_01.png|globe with a document web page icon|地球和文件图标|
folder_juliane_krug_01.png|open notebook with rings|打开的笔记本|
for_sale_sign_template_01.png|for sale sign with price|出售广告牌|
france_auvergne.png|yellow flag with red shape|黄底红色图案的旗|
france_champagne-ardenne.png|blue flag with white diagonal band|蓝底白色斜条旗|
france_lyonnais.png|flag with lion and fleur de lis|狮子和百合花旗|
france_pays_de_la_loire.png|flag with fleur de lis and ermine|百合花和白鼬纹的旗帜|
funny_music_note_01.png|music notes|音符|
funnyflower_02.png|purple daisy flower|紫色雏菊|
gabon.png|Gabon flag green yellow blue|绿黄蓝三色旗|
garlic_toast.png|slice of garlic bread|一片面包|
gattina_cat_architetto_f_01.png|grey cat lying on a purple cushion|趴在紫色垫子上的灰猫|
gentoo-terminal-inkscape_01.png|computer monitor icon with a logo|电脑显示器图标|
germany_lower_saxony.png|black red gold flag with white horse|带白马的德国州旗|
globe_marcelo_staudt_.png|earth globe|地球|
glossy_paper__gino_river_01.png|blank document page icon|空白文档图标|
golf_flag_in_hole_on_gr_01.png|golf flag on green|高尔夫球洞旗|
golf_ganson.png|golf icons bag ball club flag|高尔夫球具图标|
grandpa_01.png|old man with glasses portrait|戴眼镜的老人肖像|
grape_01.png|bunch of purple grapes|一串紫葡萄|
green_arrow_mo_01.png|light green arrow pointing up right|浅绿色斜向上箭头|
guitar_ganson.png|cartoon acoustic guitar|卡通吉他|guitar_profile_philippe__01.png
guitar_profile_philippe__01.png|small acoustic guitar|木吉他|guitar_ganson.png
hammer_nicu_buculei_01.png|sledgehammer|大锤|
harp_mo_01.png|harp|竖琴|
hash_browns.png|pile of wood shavings|一堆木屑|
heart-arrow_benji_park_01.png|heart pierced by an arrow|一箭穿心|
hedgeshear_benji_park_01.png|hedge shears|园艺大剪刀|
hotel_icon_air_conditio_01.png|air conditioning heating icon snowflake|空调冷暖图标|
hotel_icon_casino_gerald_01.png|playing cards ace of hearts icon|扑克牌图标|
hotel_icon_in_room_phon_01.png|telephone booth icon|电话亭图标|
hotel_icon_rail_transpo_01.png|train icon|火车图标|
hydrant_romus_01.png|helipad H sign|直升机停机坪标志|
io_bambina_architetto_fr_01.png|girl kicking a ball|踢球的女孩|
iris_and_pupil_chris_hin_01.png|blue eye iris|蓝色眼睛|
israel.png|Israel flag star of David|以色列国旗|
juice_glass_andremarcel._01.png|glass of orange juice with straw|一杯橙汁|
katana_dudziak_tomek_01.png|katana sword|武士刀|
kubek_herbaty_-_mug_of__01.png|cup of tea with tea bag|一杯红茶|
ladybug_02.png|ladybug|瓢虫|
led_rainbow_ganson.png|row of coloured LEDs|彩色发光二极管|
lemonade_linda_kim_01.png|lemonade cup with straw|柠檬水|
lente_normale_architetto_01.png|magnifying glass|放大镜|
liberia.png|Liberia flag|利比里亚国旗|
lightbulb_notlit_benji_p_.png|light bulb|灯泡|lightbulb_sketch_erich_s_01.png
lightbulb_sketch_erich_s_01.png|small light bulb sketch|灯泡简笔画|lightbulb_notlit_benji_p_.png
lime_half_jarno_vasamaa_.png|lime slice|青柠|
little_tan_suitcase_jona_.png|brown suitcase|棕色手提箱|
longsword_01.png|sword|剑|katana_dudziak_tomek_01.png
lucertola_arrotolata_arc_01.png|black lizard curled in a circle|黑色的蜥蜴|lucertola_maya_architett_01.png
lucertola_maya_architett_01.png|orange tribal lizard|橙色蜥蜴图腾|lucertola_arrotolata_arc_01.png
lumaca_turbo_architetto__01.png|snail with a rocket engine|装了火箭的蜗牛|
madagascar.png|red and green flag|红绿两色旗|
maledives.png|Maldives flag with crescent|马尔代夫国旗|
manga_girl_dirk_struve_01.png|anime girl with black hair|黑发动漫女孩|
mapa_stawisk_guziec_.png|street map of a town|城镇街道地图|
model-view-controller_ia_01.png|model view controller diagram|MVC架构图|
moon_charles_mccolm_01.png|grey moon|灰色的月亮|the_moon_dan_gerhards_01.png
mouse1.png|computer mouse outline|鼠标线稿|
muffin1.png|muffin|松饼|
mushroom_benji_park_.png|red spotted mushroom|红色斑点蘑菇|
ne_pas_toucher_yves_guil_01.png|do not touch sign|禁止触摸标志|
nicaragua.png|Nicaragua flag|尼加拉瓜国旗|
no_entrance_sign_martin__01.png|no pedestrians sign|禁止行人通行标志|
numero_verde_angelo_gelm_01.png|toll free phone number|免费电话号码|
obligation_generale_yves_01.png|blue exclamation mark sign|蓝色感叹号标志|
one_and_a_half_star_rat_01.png|one and a half stars rating|一星半评分|
open_box_nicu_buculei_01.png|empty cardboard box|打开的纸箱|out_of_the_box_nicu_bucu_01.png
otto_01.png|cartoon seagull with openoffice text|海鸥卡通吉祥物|
out_of_the_box_nicu_bucu_01.png|box with a green arrow coming out|纸箱和绿色箭头|
pacco_regalo_architetto__01.png|wrapped birthday present|生日礼物盒|
padania_ani_ani_01.png|green flower symbol in a ring|绿色圆环里的花|flag_of_padania_federico_01.png
paint_roller_wall_gerald_01.png|paint roller painting green|绿色油漆滚筒|
palau.png|Palau flag yellow circle on blue|蓝底黄圆旗|
peperoncino_pepper_fra_.png|red chili peppers|红辣椒|
pin_-red_nicu_buculei_01.png|red push pin|红色图钉|
pop_can.png|red soda can|红色易拉罐|
protection_obligatoire__07.png|blue pedestrian walkway sign|蓝色行人标志|
protection_obligatoire__09.png|wear gas mask sign|必须佩戴防毒面具标志|
radioactive_sign_01.png|radiation warning symbol|辐射警告标志|
ragnetto_incazzato_archi_01.png|black spider cartoon|黑色大蜘蛛|
red_flower_01.png|red flower with a stem|一朵红花|
roller_blader_ganson.png|woman on roller skates|穿旱冰鞋的女人|
rondelle_d_orange_01.png|orange slice|橙子切片|
rubik_s_cube_petri_lumme_01.png|Rubik's cube|魔方|rubik_s_cube_simple_petr_01.png
rubik_s_cube_simple_petr_01.png|Rubik cube puzzle|魔方玩具|rubik_s_cube_petri_lumme_01.png
sacco_a_pelo_per_campeg_01.png|yellow sleeping bag|黄色睡袋|
sailor_monkey_nicu_bucul_01.png|monkey in a sailor hat|戴水手帽的猴子|
sakura_dave_pena_01.png|pink cherry blossom|粉色樱花|
samoa.png|Samoa flag|萨摩亚国旗|
sand_glass_frederic_mose_01.png|hourglass|沙漏|
sapin_01.png|yellow pinwheel|黄色风车|
saw_peterm_.png|hand saw|手锯|
school_hallway_gerald_g._01.png|crumbling wall and bricks|倒塌的墙和砖|
seal_sek_.png|walrus|海象|
semaphore_error.png|semaphore flag signals man|旗语信号|semaphore_bravo.png;semaphore_juliet.png;semaphore_kilo.png;semaphore_lima.png;semaphore_whiskey.png
signalflag_foxtrot.png|red diamond on white signal flag|白底红菱形信号旗|
signalflag_juliet.png|blue white blue striped square flag|蓝白蓝条纹方旗|
signalflag_xray.png|white flag with blue cross|白底蓝十字旗|
signalflag_zulu.png|yellow black blue red triangles flag|四色三角信号旗|
silhouette_male_1.png|man standing figure outline|站立的男人人体|
sim_borja_bravo_01.png|red SIM card|红色SIM卡|
simple_calculator_01.png|calculator|计算器|
simple_five_pettle_daff_01.png|two small yellow daffodils|两朵小黄花|
simple_teddy_bear_with__01.png|teddy bear with a red bow tie|打红领结的泰迪熊|
skoynk_peterm_.png|cartoon rabbit head|卡通兔子头|
skull_charles_mccolm_01.png|small skull|骷髅头|
sledge_01.png|wooden sled|木雪橇|
smoke_nicu_buculei_03.png|burning cigar|雪茄|
sole_ezechiele_01.png|sun behind a cloud|太阳和云|
solomons_knot_ganson.png|celtic knot pattern|凯尔特结|
soup_jarno_vasamaa_.png|bowl of hot soup|一碗热汤|
south_africa_historic.png|orange white blue flag with small flags|橙白蓝三色旗|
south_korea_-_taegeukgi_01.png|South Korea flag|韩国国旗|
splash_stefan_bazelkov_01.png|blue germ with a face|蓝色病菌|
sprint_cell_phone_joel_r.png|flip phone|翻盖手机|
sugarbox_01.png|salt shaker|盐罐|
sun_ff77_01.png|yellow sun|太阳|
surfboard_davek_01.png|surfboard|冲浪板|
syrian_arab_republic.png|Syria flag with two green stars|叙利亚国旗|
table_tennis_racquets_o_01r.png|ping pong paddles|乒乓球拍|
tamerlane_chess_jonadab_.png|chess board with pieces diagram|国际象棋棋盘|
tavolozza_architetto_fra_01.png|painter's palette and brush|调色板和画笔|
tennis_shoe_jarno_vasama_.png|light blue sneaker|运动鞋|
the_moon_dan_gerhards_01.png|full moon|月球|moon_charles_mccolm_01.png
thought_cloud_jon_philli_01.png|thought bubble|思考气泡|
tibet.png|Tibetan snow lion flag|雪山狮子旗|
toro_al_tramonto_archite_01.png|bull horns on a purple blue background|紫蓝色背景上的牛角|
toyota_land_cruiser_ganson.png|green jeep with big tyres|绿色越野吉普车|
tpt_cubf_ganson.png|black trumpet drawing|黑色小号|
tramway_lumen_design_stu_01.png|orange tram|橙色有轨电车|
tres_toxique_yves_guillo_01.png|toxic skull and crossbones sign|剧毒警告骷髅标志|
trumpet_straight_mute_ganson.png|metal megaphone cone|金属扩音喇叭|
turban_jure_kodzoman_.png|red emergency button|红色按钮|
turkey.png|Turkey flag|土耳其国旗|
tuvalu.png|Tuvalu flag light blue with stars|带星星的浅蓝色旗|
uk-guernsey_neil_turner_01.png|white flag with red cross and gold cross|红色十字金十字旗|
uk_scotland.png|Scotland flag white saltire|苏格兰国旗|
uk_wales.png|Welsh dragon flag|威尔士红龙旗|
unita_disco_rigido_archi_01.png|storage drive icon|存储设备图标|
usa_nevada.png|Nevada flag|内华达州旗|
usa_rhode_island.png|white flag with an anchor and stars|锚和星星的旗帜|
volleball_net_angelo_gel_01.png|volleyball net|排球网|
woman_eye_lumen_design_s_01.png|black and white eye drawing|黑白眼睛素描|
wooden_mallot_benji_park_.png|wooden mallet|木槌|
yang_sergio_luiz_araujo__01.png|yin yang symbol|阴阳太极图|
zanzara_cretina_architet_01.png|insect with hearts|冒爱心的小虫|
"""


def items() -> list[GoldenItem]:
    """Every description, two per picture (en, zh), each with its fixed half."""
    out: list[GoldenItem] = []
    for line in TABLE.strip().splitlines():
        file, en, zh, also = line.split("|")
        relevant = [file, *(a for a in also.split(";") if a)]
        stem = file.rsplit(".", 1)[0]
        half = question_split(f"{NAME}/{stem}")
        for lang, query in (("en", en), ("zh", zh)):
            out.append(GoldenItem(id=f"{NAME}/{stem}/{lang}", query=query, relevant=relevant, lang=lang, kind="description", split=half))
    return out


def golden(out_dir: str | Path, recipe: ClipartRecipe | None = None, split: str | None = None) -> list[GoldenItem]:
    """The descriptions over a built clipart corpus (``out_dir/corpus``), all or one half (``dev`` /
    ``heldout``); one error line when a named picture is not in the corpus."""
    corpus = Path(out_dir) / "corpus"
    got = items()
    missing = sorted({f for it in got for f in it.relevant if not (corpus / f).is_file()})
    if missing:
        raise ImgragError(
            f"pictures: {len(missing)} described pictures are not in {corpus}: {', '.join(missing[:5])}",
            "the clipart corpus changed (its recipe or the openclipart package): describe its pictures again in "
            "evals/golden/pictures.py",
        )
    return [it for it in got if split is None or getattr(it, "split", None) == split]
