"""topic: the topic of a generated sentence (sports / weather / food / tech), a classification task.

Each sentence has a neutral frame (who, when, where, a tone) and one topical clause; the clauses
avoid the topic's name, and some share words across topics ("running", "cool", "fast", "chips"),
so the label must come from the clause's meaning rather than one keyword. A new, untrained
classifier head is at chance (25 %).
"""
from __future__ import annotations

import random

LABELS = ("sports", "weather", "food", "tech")

_CLAUSES = {
    "sports": (
        "the striker scored twice in the second half", "the team kept running until the final whistle",
        "the keeper saved a penalty", "she ran the marathon in under three hours",
        "the coach picked a fast winger for the derby", "they lost the match on a late goal",
        "the referee sent off two players", "he served four aces in the first set",
        "the relay team broke the club record", "the fans cheered a cool finish from the captain",
        "the cyclists climbed the last pass together", "the rookie hit a home run",
        "the swimmers finished the final lap side by side", "the boxer won on points",
        "the league table changed after the weekend games", "the goalkeeper kept a clean sheet",
    ),
    "weather": (
        "heavy rain is expected by the afternoon", "the wind picked up after sunset",
        "it stayed cool and cloudy all morning", "a thunderstorm rolled in from the coast",
        "the forecast promises clear skies", "snow covered the roads overnight",
        "the temperature dropped below freezing", "a warm front is running across the valley",
        "fog delayed the first ferries", "the humidity made the evening feel hot",
        "hail fell for ten minutes", "the drought ended with a week of showers",
        "a fast moving storm knocked out the lights", "the sun finally broke through the clouds",
        "frost left the fields white", "the heatwave lasted a fourth day",
    ),
    "food": (
        "the soup needed more salt", "they baked fresh bread with rosemary",
        "the chips came with a spicy dip", "she ordered the grilled fish and a salad",
        "the chef is running a new tasting menu", "the curry simmered for two hours",
        "a cool glass of lemonade went with the pie", "the noodles were cooked in a fast wok",
        "he sliced tomatoes for the sauce", "the cake was too sweet for most guests",
        "the market sold ripe peaches by the box", "they shared a plate of dumplings",
        "the stew tasted better the next day", "the waiter brought a second pot of tea",
        "the recipe calls for roasted garlic", "the pancakes were topped with berries",
    ),
    "tech": (
        "the new phone ships with a faster chip", "the update fixed a bug in the login screen",
        "the laptop battery lasts twelve hours", "the servers are running the latest release",
        "the startup launched an app for budgeting", "a cool feature lets you edit photos offline",
        "the chips in the new console run hot", "the browser now blocks trackers by default",
        "engineers moved the database to the cloud", "the robot learned to sort parcels",
        "the headset pairs over bluetooth", "a fast network rollout reached rural towns",
        "the printer driver crashed after the upgrade", "the smartwatch counts steps and sleep",
        "the code review found a memory leak", "the router firmware closed a security hole",
    ),
}
_WHO = ("My neighbour said", "According to the radio,", "Sam wrote that", "The report says",
        "Everyone agreed that", "Late last night", "Someone at work mentioned that", "In the end",
        "As usual,", "My sister texted that", "The newsletter noted that", "Believe it or not,",
        "Oddly enough,", "We heard that", "The group chat says", "Luckily,")
_WHEN = ("", " on Monday", " this weekend", " yesterday", " again", " in the north", " downtown",
         " at the last minute", " for the first time", " near the station", " early today", " last spring")
_TAIL = (".", "!", ", apparently.", ", or so I heard.", ", which surprised nobody.", ", to be honest.",
         ", says Alex.", " and nobody complained.", ", as predicted.", ", believe me.", " once more.",
         ", they said.", ", again and again.", "?", ", of all things.", ", no joke.")


def make(rng: random.Random) -> tuple[str, str]:
    """(sentence, topic): a neutral opening, one topical clause, an optional time or place, a neutral end
    (64 clauses x 16 x 12 x 16 frames: 196,608 distinct sentences)."""
    label = rng.choice(LABELS)
    clause = rng.choice(_CLAUSES[label])
    return f"{rng.choice(_WHO)} {clause}{rng.choice(_WHEN)}{rng.choice(_TAIL)}", label


def check(prediction: str, reference: str) -> dict:
    """Exact match of the predicted label."""
    return {"correct": prediction.strip().lower() == reference.strip().lower()}
