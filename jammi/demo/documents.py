"""Deterministic long documents: reports whose paragraphs each follow a topic, sentences drawn
from per-topic templates and vocabularies, so no two paragraphs are copies. The demo chunks a
handful of them; bench/documents.py plants one fact per document in thousands of them."""

from __future__ import annotations

import random

TOPICS: dict[str, dict[str, list[str]]] = {
    "harbour": {
        "subject": ["the harbour master", "a trawler crew", "the ferry company", "dock workers",
                    "the fish market", "a salvage team", "the coast guard", "the lock keeper"],
        "verb": ["reported", "delayed", "repaired", "inspected", "unloaded", "recorded", "rerouted"],
        "object": ["the morning catch", "two cargo barges", "the northern breakwater", "a leaking hull",
                   "the tide tables", "crates of mackerel", "the channel buoys", "the winter moorings"],
        "detail": ["after the storm surge", "before the spring tide", "despite a strong easterly",
                   "while gulls circled the quay", "under a grey sky", "as fog rolled over the pier"],
    },
    "orchard": {
        "subject": ["the orchard cooperative", "seasonal pickers", "the cider mill", "a beekeeper",
                    "the grafting team", "local growers", "the packing shed", "an agronomist"],
        "verb": ["harvested", "pruned", "sorted", "pressed", "planted", "sprayed", "measured"],
        "object": ["the late apples", "rows of pear trees", "young rootstock", "the first blossom",
                   "barrels of cider", "frost-damaged buds", "the quince hedge", "heritage varieties"],
        "detail": ["ahead of the first frost", "in the cool of the evening", "after a dry summer",
                   "with borrowed ladders", "to meet the market order", "despite the hail in May"],
    },
    "railway": {
        "subject": ["the branch line", "signal engineers", "the station staff", "a track gang",
                    "the timetable office", "commuters", "the freight operator", "the viaduct crew"],
        "verb": ["replaced", "cancelled", "extended", "surveyed", "repainted", "rescheduled", "tested"],
        "object": ["worn sleepers", "the evening service", "the level crossing", "a points motor",
                   "the platform canopy", "the overnight freight", "the signal box", "the ticket hall"],
        "detail": ["during the Sunday closure", "after complaints about delays", "ahead of the holidays",
                   "with new steel from the mill", "in heavy rain", "under the regional budget"],
    },
    "library": {
        "subject": ["the village library", "volunteer archivists", "the reading group",
                    "the children's corner", "a visiting author", "the county archive",
                    "the mobile library", "the chess club"],
        "verb": ["catalogued", "lent", "restored", "digitised", "hosted", "donated", "reorganised"],
        "object": ["old parish maps", "a shelf of atlases", "the local newspaper run", "rare pamphlets",
                   "the poetry evening", "large-print novels", "the photograph collection",
                   "water-stained ledgers"],
        "detail": ["over the long winter", "with a small grant", "after the roof repair",
                   "on market day", "for the anniversary exhibition", "in the back reading room"],
    },
    "council": {
        "subject": ["the town council", "the planning committee", "residents", "the mayor",
                    "the budget office", "a ward councillor", "the housing board", "local traders"],
        "verb": ["approved", "debated", "postponed", "funded", "rejected", "audited", "published"],
        "object": ["the new bus lanes", "a parking levy", "the flood defences", "street lighting",
                   "the annual accounts", "a community garden", "the school extension", "market fees"],
        "detail": ["at a crowded meeting", "after a public consultation", "by a narrow vote",
                   "pending a traffic study", "within the spending cap", "following a petition"],
    },
    "weather": {
        "subject": ["the weather station", "forecasters", "a storm front", "farmers on the ridge",
                    "the river authority", "hikers", "the ski patrol", "the observatory"],
        "verb": ["measured", "warned of", "brought", "tracked", "logged", "predicted", "recorded"],
        "object": ["record rainfall", "a week of drought", "hail the size of marbles", "gale force gusts",
                   "the first snow", "rising river levels", "an early heatwave", "ground frost"],
        "detail": ["across the northern valleys", "over the bank holiday", "for the third year running",
                   "along the exposed coast", "before dawn", "while the barometer kept falling"],
    },
    "school": {
        "subject": ["the primary school", "a science teacher", "the parents' association",
                    "the school choir", "year nine pupils", "the head teacher", "the football team",
                    "the school kitchen"],
        "verb": ["organised", "won", "started", "rehearsed", "built", "celebrated", "introduced"],
        "object": ["a robotics club", "the regional quiz", "a vegetable plot", "the summer concert",
                   "a weather balloon", "the sports day", "free breakfasts", "a reading challenge"],
        "detail": ["with help from local firms", "despite a tight budget", "for the first time",
                   "after months of practice", "in the renovated hall", "before the exams"],
    },
    "market": {
        "subject": ["the covered market", "cheese makers", "a street baker", "the flower stalls",
                    "the butcher's guild", "market inspectors", "a spice merchant", "the night market"],
        "verb": ["sold", "priced", "introduced", "stocked", "advertised", "imported", "discounted"],
        "object": ["smoked trout", "sourdough loaves", "seasonal greens", "hand-thrown pottery",
                   "wild honey", "aged cheddar", "dried chillies", "cut tulips"],
        "detail": ["at weekend prices", "to queues before opening", "from farms up the valley",
                   "after the harvest festival", "despite rising rents", "under the new awnings"],
    },
}
CONNECTIVES = ["Meanwhile", "Later that week", "By the end of the month", "Earlier in the season",
               "According to the minutes", "In a separate report", "As expected", "Unusually"]


def sentence(rng: random.Random, topic: str) -> str:
    words = TOPICS[topic]
    s = f"{rng.choice(words['subject'])} {rng.choice(words['verb'])} {rng.choice(words['object'])}"
    if rng.random() < 0.7:
        s += f" {rng.choice(words['detail'])}"
    if rng.random() < 0.25:
        s = f"{rng.choice(CONNECTIVES)}, {s}"
    return s[0].upper() + s[1:] + "."


def paragraph(rng: random.Random, topic: str, sentences: tuple[int, int] = (4, 7)) -> str:
    return " ".join(sentence(rng, topic) for _ in range(rng.randint(*sentences)))


def report(rng: random.Random, paragraphs: int, topics: int = 3) -> list[str]:
    """`paragraphs` paragraphs over `topics` topics of the document, topic by topic."""
    chosen = rng.sample(sorted(TOPICS), k=min(topics, len(TOPICS)))
    return [paragraph(rng, chosen[i * len(chosen) // paragraphs]) for i in range(paragraphs)]


def make_documents(n: int, seed: int = 23, paragraphs: tuple[int, int] = (5, 9)) -> list[dict]:
    """`n` reports (`doc_id`, `title`, `body`: paragraphs separated by blank lines)."""
    rng = random.Random(seed)
    docs = []
    for i in range(n):
        body = report(rng, rng.randint(*paragraphs), topics=rng.randint(2, 4))
        title = f"Town report {i + 1}: " + body[0].split(".")[0]
        docs.append({"doc_id": f"doc-{i + 1:04d}", "title": title, "body": "\n\n".join(body)})
    return docs
