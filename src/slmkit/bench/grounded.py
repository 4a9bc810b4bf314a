"""The grounded workload: answers drawn from a passage in the prompt.

Much of what small models serve is grounded in their input: extraction, rewriting, quoting,
RAG answers. Each request gets a document of its own (about 300-600 tokens: a site history,
meeting minutes, a product notice or an incident report, with seeded names, dates and figures)
and a task that makes the answer copy from it, with a budget of 128-256 tokens.
"""

from __future__ import annotations

import random

from slmkit.bench.workload import BenchPrompt, Workload

NAMES = ("Elias Varga", "Marta Oyelaran", "Tomas Lindqvist", "Priya Raman", "Jonah Whitcombe", "Ines Carvalho",
         "Kofi Mensah", "Hana Kowalczyk", "Luca Ferrante", "Amara Nwosu", "Sven Halvorsen", "Yuki Tanabe")
PLACES = ("Cape Mora", "Westhaven", "Brindle Bay", "Ashford Falls", "Kelso Point", "Marrow Island", "Stonebridge",
          "Larkspur Valley", "Port Ellery", "Harrow Fen")
THINGS = ("the north pier", "the pumping station", "the reading room", "the signal tower", "the old mill",
          "the east gate", "the harbour wall", "the clock tower")
DEVICES = ("AquaPure 300 water filter", "Vela S2 electric kettle", "Nordlight desk lamp", "Brisa 40 air purifier",
           "Tempo X1 bread maker", "Orla K5 pressure cooker")
SYSTEMS = ("the payment gateway", "the login service", "the order database", "the search cluster",
           "the email relay", "the backup scheduler")
MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
          "November", "December")

HISTORY = (
    "{place} was first recorded in {y1} as a fishing settlement of {n1} households.",
    "Construction of {thing} began in {y2} under the engineer {name1}, using granite quarried nearby.",
    "The work took {n2} months and cost {n3} pounds, nearly twice the original estimate.",
    "In {y3} a storm destroyed part of {thing}, and {name2} organised the repairs with {n4} volunteers.",
    "The local council bought the site in {y4} for {n5} pounds and opened it to visitors.",
    "{name3} kept a daily logbook from {y3} to {y4}, recording the weather, the ships and the repairs.",
    "According to the logbook, the worst winter was that of {y5}, when the harbour froze for {n6} days.",
    "A railway line reached {place} in {y5}, and the population grew to {n7} within a decade.",
    "The museum beside {thing} holds {n8} objects, among them the original brass lamp and the keeper's desk.",
    "Restoration work in {y6} replaced the roof and rebuilt the stone stairs at a cost of {n9} pounds.",
    "Today about {n10} people visit {thing} every year, most of them between {m1} and {m2}.",
    "Guided tours start at {h1} o'clock and last {t1} minutes; children under twelve enter free.",
    "In {y2} the lamp was fuelled by whale oil; kerosene replaced it in {y4} and electricity in {y6}.",
    "{name4} painted the building white with a red band in {y5}, and the colours have been kept since.",
    "A small school opened in {place} in {y3} with {n1} pupils and a single teacher, {name2}.",
    "The harbour master's records for {y4} list {n7} ships, most of them carrying coal, timber and salt.",
    "During the flood of {y5}, the water rose {d1} feet above the quay and reached the steps of {thing}.",
    "The {place} Heritage Trust, founded by {name3} in {y6}, now manages the site and its archive.",
)
MINUTES = (
    "The planning committee of {place} met on {d1} {m1} {y6}, chaired by {name1}.",
    "Present were {name2}, {name3} and {n1} members of the public; {name4} sent apologies.",
    "The minutes of the previous meeting were approved without changes.",
    "{name2} reported that the repair of {thing} is {p1} percent complete and should finish by {d2} {m2}.",
    "The budget for the repair is {n3} pounds, of which {n4} pounds have been spent so far.",
    "The committee agreed to ask for three quotes before any further spending above {n5} pounds.",
    "{name3} presented the survey of residents: {p2} percent support extending the opening hours.",
    "It was decided that the reading room will open at {h1} o'clock on weekdays from {d2} {m2}.",
    "Action: {name4} will write to the county office about the parking problem before {d3} {m3}.",
    "Action: {name2} will publish the revised timetable on the council website within {n7} days.",
    "A member of the public asked about the noise from {thing}; {name1} promised a reply in writing.",
    "The next meeting will be held on {d3} {m3} at {h2} o'clock in the town hall of {place}.",
    "{name4} asked whether the volunteers could be insured; the clerk will find out the cost by {d1} {m3}.",
    "The treasurer reported an income of {n8} pounds from the summer fair, {n4} pounds more than last year.",
    "It was agreed to spend up to {n5} pounds on new benches along the path to {thing}.",
    "{name3} proposed a youth seat on the committee; the proposal passed with {d1} votes to {d3}.",
    "The committee noted a letter from the county office about the bus timetable of {place}.",
    "There being no other business, the chair closed the meeting at {h2}:{t2}.",
)
NOTICE = (
    "Thank you for choosing the {device}. Please read this notice before first use.",
    "The {device} is rated at {n1} watts and must be connected to a grounded socket.",
    "Before first use, rinse all removable parts in warm water and dry them completely.",
    "Never fill the container above the MAX mark, which corresponds to {n2} millilitres.",
    "To start, press the power button once; the indicator turns blue, then green after {n6} seconds.",
    "If the indicator flashes red, unplug the appliance and wait {n7} minutes before trying again.",
    "Clean the filter every {n8} days, or sooner if you notice a drop in performance.",
    "Replacement filters are sold in packs of {n4} and last about {n5} hours of use each.",
    "Do not use the {device} outdoors, near a bath, or with an extension cable.",
    "The warranty lasts {n9} months from the date of purchase and covers defects in materials.",
    "Damage caused by dropping the appliance or by descaling with vinegar is not covered.",
    "For service, contact {name1} at the {place} service centre, open from {h1} to {h2} o'clock.",
    "Keep the appliance out of the reach of children and never move it while it is switched on.",
    "To descale, fill the container with a citric acid solution, run one cycle and rinse {d1} times.",
    "The automatic shut-off stops the appliance after {t1} minutes without use.",
    "The cable is {d1} metres long and can be wound around the base for storage.",
    "Dispose of the appliance at a recycling point for electrical goods, not with household waste.",
    "Model number, serial number and date of manufacture are printed on the label under the base.",
)
INCIDENT = (
    "At {h1}:{t1} on {d1} {m1}, monitoring reported that {system} was answering slowly.",
    "The on-call engineer, {name1}, acknowledged the alert {n6} minutes later.",
    "Error rates rose to {p1} percent and about {n3} customer requests failed.",
    "{name1} found that a configuration change deployed at {h1}:{t2} had halved the connection pool.",
    "The change had been reviewed by {name2}, but the load test did not cover peak traffic.",
    "At {h2}:{t3} the change was rolled back, and error rates returned to normal within {n7} minutes.",
    "{name3} informed the affected customers of {place} by email the same afternoon.",
    "No data was lost; {n8} delayed orders were processed automatically after the recovery.",
    "Follow-up: {name2} will add peak traffic to the load test before {d2} {m2}.",
    "Follow-up: {name4} will add an alert on the size of the connection pool of {system}.",
    "The total duration of the incident was {n9} minutes, from the first alert to full recovery.",
    "This report was written by {name4} and reviewed by the operations team on {d3} {m3}.",
    "Between {h1}:{t1} and {h1}:{t2} the team checked the network and the disks, which were both healthy.",
    "{name2} joined the call at {h1}:{t3} and suggested comparing the current settings with the last release.",
    "Customer support received {n4} calls and {n5} emails about failed payments during the incident.",
    "The status page was updated at {h1}:{t4}, {t1} minutes after the first alert, which was too late.",
    "Follow-up: {name3} will update the status page automatically when error rates pass {d1} percent.",
    "The team agreed that configuration changes to {system} will need a second review from now on.",
)
KINDS = (("history of a site", HISTORY), ("meeting minutes", MINUTES), ("product notice", NOTICE),
         ("incident report", INCIDENT))
TASKS = (
    ("Copy the second paragraph of the document exactly, word for word. Then list every number it contains, "
     "each with the words around it.", 192),
    ("Quote, word for word, every sentence of the document that mentions {name1}. Put each quote on its own "
     "line, then say in one sentence what these quotes tell us.", 160),
    ("Rewrite the document as a numbered list of facts, one sentence each, keeping the original wording "
     "wherever you can.", 256),
    ("Extract every date, time and amount from the document, each followed by the full sentence it appears in.",
     224),
    ("Repeat the first paragraph exactly as written, then rewrite it in plain words for a ten-year-old.", 192),
    ("Answer with quotes from the document only: what happened, who was involved, and what happens next?", 128),
)


def _fill(rng: random.Random) -> dict[str, str]:
    names = rng.sample(NAMES, 4)
    values = {f"name{i + 1}": n for i, n in enumerate(names)}
    years = sorted(rng.sample(range(1790, 2020), 6))
    values |= {f"y{i + 1}": str(y) for i, y in enumerate(years)}
    values |= {f"n{i + 1}": str(rng.randint(3, 20 * (i + 1) ** 2)) for i in range(10)}
    values |= {f"m{i + 1}": rng.choice(MONTHS) for i in range(3)}
    values |= {f"d{i + 1}": str(rng.randint(1, 28)) for i in range(3)}
    values |= {"p1": str(rng.randint(5, 95)), "p2": str(rng.randint(5, 95))}
    values |= {f"t{i + 1}": str(m) for i, m in enumerate(sorted(rng.sample(range(10, 60), 4)))}
    values |= {"h1": str(rng.randint(7, 11)), "h2": str(rng.randint(13, 18)), "place": rng.choice(PLACES),
               "thing": rng.choice(THINGS), "device": rng.choice(DEVICES), "system": rng.choice(SYSTEMS)}
    return values


def grounded_prompt(index: int, seed: int = 0) -> BenchPrompt:
    """Request ``index``'s document (13-18 sentences in 3 paragraphs) and task."""
    rng = random.Random(seed * 1_000_003 + index)
    kind, sentences = KINDS[index % len(KINDS)]
    values = _fill(rng)
    count = rng.randint(13, len(sentences))
    chosen = sorted(rng.sample(range(len(sentences)), count))  # keep the document's order
    lines = [sentences[i].format(**values) for i in chosen]
    cut = [0, count // 3, 2 * count // 3, count]
    document = "\n\n".join(" ".join(lines[cut[p]:cut[p + 1]]) for p in range(3))
    task, budget = TASKS[rng.randrange(len(TASKS))]
    text = (f"Here is a document ({kind}).\n\n<document>\n{document}\n</document>\n\n"
            f"{task.format(**values)}")
    return BenchPrompt([{"role": "user", "content": text}], budget)


def grounded_workload(max_tokens: int | None = None, *, seed: int = 0) -> Workload:
    """A document of its own for every request, and a task that draws the answer from it
    (budgets 128-256 tokens; ``max_tokens`` caps them). Answers end where the model ends them."""

    def make(i: int) -> BenchPrompt:
        prompt = grounded_prompt(i, seed)
        return BenchPrompt(prompt.messages, min(prompt.max_tokens, max_tokens) if max_tokens else prompt.max_tokens)

    description = {"documents": "one per request, ~300-600 tokens", "max_tokens": "128-256",
                   "max_tokens_cap": max_tokens, "kinds": [k for k, _ in KINDS], "tasks": len(TASKS)}
    return Workload("grounded", [make(0)], description=description, make=make)
