"""The sample site's text pages: paragraphs on known topics from per-topic vocabularies and shared filler words."""

from __future__ import annotations

import numpy as np

# Four topics, each with its own words; every sentence also draws filler shared by all topics and, with
# CROSSTALK probability, a word of another topic, so a page is not classified by one keyword.
TOPIC_WORDS: dict[str, tuple[str, ...]] = {
    "astronomy": (
        "telescope",
        "galaxy",
        "orbit",
        "planet",
        "nebula",
        "comet",
        "stellar",
        "eclipse",
        "asteroid",
        "cosmic",
        "supernova",
        "observatory",
        "lunar",
        "solar",
        "constellation",
        "meteor",
    ),
    "cooking": (
        "recipe",
        "oven",
        "flour",
        "simmer",
        "garlic",
        "butter",
        "saucepan",
        "roast",
        "dough",
        "spice",
        "knead",
        "broth",
        "skillet",
        "pastry",
        "marinade",
        "whisk",
    ),
    "football": (
        "goal",
        "striker",
        "referee",
        "penalty",
        "midfield",
        "league",
        "tackle",
        "keeper",
        "offside",
        "stadium",
        "match",
        "coach",
        "corner",
        "dribble",
        "season",
        "transfer",
    ),
    "gardening": (
        "soil",
        "compost",
        "seedling",
        "prune",
        "mulch",
        "perennial",
        "trowel",
        "bloom",
        "hedge",
        "fertiliser",
        "greenhouse",
        "bulbs",
        "watering",
        "weeds",
        "shrub",
        "harvest",
    ),
}
FILLER = (
    "the",
    "a",
    "of",
    "and",
    "to",
    "in",
    "with",
    "for",
    "on",
    "this",
    "that",
    "was",
    "is",
    "we",
    "they",
    "very",
    "really",
    "today",
    "new",
    "good",
    "great",
    "people",
    "time",
    "year",
    "week",
    "little",
    "first",
    "long",
    "best",
    "after",
    "before",
    "around",
    "about",
    "some",
    "many",
    "every",
)
CROSSTALK = 0.15
TOPICS = tuple(TOPIC_WORDS)


def make_topic_text(topic: str, rng: np.random.Generator, sentences: int = 6) -> str:
    """A paragraph on `topic`: `sentences` sentences of 8-14 words, about a third from the topic's vocabulary."""
    others = [t for t in TOPICS if t != topic]
    out = []
    for _ in range(sentences):
        words = []
        for _ in range(int(rng.integers(8, 15))):
            draw = rng.random()
            if draw < 0.33:
                words.append(str(rng.choice(TOPIC_WORDS[topic])))
            elif draw < 0.33 + CROSSTALK:
                words.append(str(rng.choice(TOPIC_WORDS[str(rng.choice(others))])))
            else:
                words.append(str(rng.choice(FILLER)))
        out.append(" ".join(words).capitalize() + ".")
    return " ".join(out)


def make_topic_title(topic: str, rng: np.random.Generator) -> str:
    """A short page title: two words of the topic and a filler word, capitalised."""
    words = [str(w) for w in rng.choice(TOPIC_WORDS[topic], size=2, replace=False)]
    return f"{words[0].capitalize()} {rng.choice(FILLER)} {words[1]}"
