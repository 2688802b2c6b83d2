"""The demo catalogue's words: brands, product types per category, materials, adjectives,
features, uses and review phrases, and the date the catalogue starts. Shared by the product
and review generator (jammi.demo.generate) and the fusion sources made from its products
(jammi.demo.fusion_data)."""

from __future__ import annotations

from datetime import datetime

BRANDS = ["Acme", "Nordkap", "Lumen", "Verdant", "Ironclad", "Kestrel", "Brightwave", "Solano",
          "Tundra", "Mistral", "Pinecrest", "Helix", "Orbit", "Cobalt", "Juniper", "Quarry"]
CATEGORIES = {
    "kitchen": ["chef's knife", "cast iron skillet", "espresso machine", "blender", "kettle",
                "cutting board", "stand mixer", "rice cooker", "toaster", "dutch oven"],
    "outdoors": ["hiking backpack", "two-person tent", "sleeping bag", "trekking poles",
                 "headlamp", "water filter", "camp stove", "rain jacket", "trail shoes"],
    "electronics": ["wireless earbuds", "noise-cancelling headphones", "bluetooth speaker",
                    "mechanical keyboard", "4k monitor", "usb-c hub", "webcam", "e-reader"],
    "home": ["desk lamp", "throw blanket", "air purifier", "robot vacuum", "bookshelf",
             "office chair", "standing desk", "wall clock", "humidifier"],
    "sports": ["yoga mat", "adjustable dumbbells", "road bike helmet", "jump rope",
               "resistance bands", "running vest", "swim goggles", "foam roller"],
}
MATERIALS = ["stainless steel", "recycled nylon", "bamboo", "aluminium", "merino wool",
             "walnut", "silicone", "carbon fibre", "ceramic", "organic cotton"]
ADJECTIVES = ["lightweight", "compact", "durable", "ergonomic", "waterproof", "quiet",
              "foldable", "premium", "energy-efficient", "heavy-duty", "minimalist"]
FEATURES = ["a lifetime warranty", "a two-year warranty", "free replacement parts",
            "a carrying case", "a quick-start guide", "USB-C charging", "a non-slip base",
            "dishwasher-safe parts", "an adjustable strap", "a magnetic lid"]
USES = ["everyday use", "weekend trips", "small apartments", "professional kitchens",
        "long commutes", "home offices", "beginners", "serious athletes", "families"]
REVIEW_OPENERS = ["Bought this for", "Using it daily for", "Got it as a gift for",
                  "Replaced my old one for", "Tried it out on"]
REVIEW_VERDICTS = {
    1: ["broke after a week", "stopped working, very disappointed", "nothing like the photos"],
    2: ["feels cheap", "works but is louder than expected", "the strap wore out quickly"],
    3: ["does the job", "fine for the price", "average build, average performance"],
    4: ["really solid, minor quibbles", "good value and well made", "would buy again"],
    5: ["absolutely love it", "best purchase this year", "exceeded every expectation"],
}
START = datetime(2024, 1, 1)
