"""Words of the field that name the same thing: abbreviations, English names and the several
Chinese names buyers and patent drafters use. One table for the catalogue index's synonyms
(Meilisearch expands a query with them) and for reading demands (a term's alternatives)."""

from __future__ import annotations

import re
from typing import Final

# Each group: terms that mean the same; order does not matter. Latin terms are lower case.
GROUPS: Final[tuple[tuple[str, ...], ...]] = (
    ("虚拟现实", "vr", "virtual reality"),
    ("增强现实", "ar", "augmented reality"),
    ("混合现实", "mr", "mixed reality"),
    ("扩展现实", "xr"),
    ("头戴显示", "头戴式显示", "头显", "头戴设备", "头戴式设备", "hmd"),
    ("锂离子电池", "锂电池", "锂电", "lithium-ion battery", "lithium battery", "li-ion"),
    ("隔膜", "separator"),
    ("人工智能", "ai", "artificial intelligence"),
    ("神经网络处理器", "ai芯片", "人工智能芯片", "npu", "神经网络芯片", "深度学习处理器"),
    ("神经网络", "neural network"),
    ("卷积神经网络", "cnn"),
    ("循环神经网络", "rnn"),
    ("深度学习", "deep learning"),
    ("机器学习", "machine learning"),
    ("语音识别", "asr", "speech recognition", "语音转文字", "语音转写"),
    ("语音合成", "tts", "text to speech", "文字转语音"),
    ("自然语言处理", "nlp", "natural language processing"),
    ("机器翻译", "自动翻译", "machine translation"),
    ("文字识别", "ocr", "字符识别"),
    ("声纹识别", "说话人识别", "说话人确认"),
    ("语音唤醒", "唤醒词", "关键词唤醒"),
    ("回声消除", "回音消除", "aec"),
    ("降噪", "噪声抑制", "消噪"),
    ("麦克风阵列", "mic阵列", "传声器阵列"),
    ("芯片", "chip", "集成电路"),
    ("处理器", "processor", "cpu"),
    ("图形处理器", "gpu", "显卡"),
    ("现场可编程门阵列", "fpga"),
    ("片上系统", "soc"),
    ("眼球追踪", "眼动追踪", "视线追踪", "眼动跟踪", "注视点追踪", "eye tracking"),
    ("手势识别", "手势交互", "gesture recognition"),
    ("人脸识别", "面部识别", "face recognition"),
    ("显示面板", "显示屏", "屏幕", "显示器"),
    ("有机发光二极管", "oled"),
    ("液晶显示", "lcd"),
    ("光学模组", "光学模块", "光学组件"),
    ("无人机", "无人飞行器", "uav", "drone"),
    ("基因编辑", "crispr", "gene editing"),
    ("新能源汽车", "电动汽车", "electric vehicle"),
    ("光伏", "太阳能电池", "photovoltaic", "solar cell"),
    ("物联网", "iot"),
    ("三维", "3d", "立体"),
    ("全景视频", "360度视频", "vr视频"),
    ("手柄", "操控手柄", "交互手柄"),
    ("可穿戴设备", "穿戴设备", "智能穿戴"),
    ("机器人", "robot"),
    ("延迟", "时延", "延时", "latency"),
    ("避障", "防撞", "避让障碍", "避开障碍"),
    ("瞳距", "双眼间距", "两眼间距", "眼间距", "ipd"),
    ("力反馈", "触觉反馈", "力觉反馈", "haptic"),
    ("形变", "变形"),
    ("晕动症", "晕眩", "眩晕", "头晕", "motion sickness"),
    ("定位追踪", "空间定位", "位姿追踪", "tracking"),
    ("手机", "移动终端", "智能手机"),
    ("长短期记忆网络", "lstm"),
)

_LATIN = re.compile(r"[a-z0-9]")


def _synonyms() -> dict[str, list[str]]:
    table: dict[str, list[str]] = {}
    for group in GROUPS:
        for term in group:
            table.setdefault(term, []).extend(t for t in group if t != term)
    return table


SYNONYMS: Final[dict[str, list[str]]] = _synonyms()
# One pass finds every known word of a term: longest first (锂离子电池 before 锂电), and a Latin
# word only where it stands as a word (`ar` is not inside `radar`).
_KNOWN: Final = re.compile(
    "|".join(
        rf"(?<![a-z0-9]){re.escape(key)}(?![a-z0-9])" if _LATIN.match(key[0]) else re.escape(key)
        for key in sorted(SYNONYMS, key=len, reverse=True)
    )
)


def alternatives(pieces: list[tuple[str, ...]], limit: int = 8) -> list[str]:
    """A term cut by `segments` written with the other names of its words, one word at a time,
    at most `limit`: 锂电隔膜 -> 锂离子电池隔膜, 锂电池隔膜 ..."""
    found: list[str] = []
    for i, names in enumerate(pieces):
        for other in names[1:]:
            written = "".join(p[0] for p in pieces[:i]) + other
            written += "".join(p[0] for p in pieces[i + 1 :])
            if written not in found:
                found.append(written)
    return found[:limit]


def segments(term: str) -> list[tuple[str, ...]]:
    """`term` cut at the words the table knows, each piece with its other names, as written
    first: ar眼镜光学模组 -> [(ar, 增强现实, ...), (眼镜,), (光学模组, 光学模块, 光学组件)]."""
    pieces: list[tuple[str, ...]] = []
    position = 0
    for found in _KNOWN.finditer(term):
        if found.start() > position:
            pieces.append((term[position : found.start()],))
        pieces.append((found[0], *SYNONYMS[found[0]]))
        position = found.end()
    if position < len(term):
        pieces.append((term[position:],))
    return pieces
