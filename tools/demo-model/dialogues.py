"""Seeded generator of synthetic dialogues for the Chloe-tiny demo model.

Every dialogue is a chat request in OpenAI JSON shape (the shape `ChatRequest` in the Swift
`Chat` module decodes), so the same record can be encoded by mistral-common here and by the Swift
`InstructEncoder` there. Each skill has an answer that can be checked exactly, which is what lets
the Swift engine's end-to-end test score a *trained* model instead of noise.

Skills (the `skill` field names the skill of the *last* assistant turn):
  greeting     "Hello!" -> "Hello! I am Chloe. How can I help you today?"
  identity     "What is your name?" -> "My name is Chloe."
  arithmetic   add / subtract (0..99, never negative) and multiply (0..12)
  capital      capitals of the fixed list COUNTRIES
  recall       a fact stated earlier ("My name is Ana.") asked for later ("What is my name?")
  tool_call    a weather/time question with the matching tool available -> [TOOL_CALLS] JSON
  tool_answer  a [TOOL_RESULTS] payload turned into a sentence
  refusal      anything else (unknown countries, general knowledge, a tool that is not
               available) -> REFUSAL

Held-out discipline: add/subtract problems whose (op, a, b) hashes into the held-out bucket
(`is_heldout_arith`) never appear in training data, so the arithmetic score measures
generalisation, not recall. The multiplication table (13 x 13) and the capitals are facts to
memorise, so they are not held out; every other held-out prompt still differs from the training
set by seed (names, cities, temperatures, phrasing and dialogue context are drawn afresh).
"""

from __future__ import annotations

import hashlib
import json
import random
from typing import Any

REFUSAL = "I'm sorry, I don't know that."
GREETING_REPLY = "Hello! I am Chloe. How can I help you today?"
IDENTITY_REPLY = "My name is Chloe."

COUNTRIES = {
    "France": "Paris", "Germany": "Berlin", "Italy": "Rome", "Spain": "Madrid",
    "Portugal": "Lisbon", "Austria": "Vienna", "Poland": "Warsaw", "Greece": "Athens",
    "Sweden": "Stockholm", "Norway": "Oslo", "Denmark": "Copenhagen", "Finland": "Helsinki",
    "Ireland": "Dublin", "Belgium": "Brussels", "the Netherlands": "Amsterdam",
    "Switzerland": "Bern", "Japan": "Tokyo", "China": "Beijing", "India": "New Delhi",
    "Egypt": "Cairo", "Kenya": "Nairobi", "Canada": "Ottawa", "Mexico": "Mexico City",
    "Brazil": "Brasilia", "Argentina": "Buenos Aires", "Peru": "Lima", "Australia": "Canberra",
    "Russia": "Moscow", "Turkey": "Ankara", "South Korea": "Seoul",
}
# Countries Chloe was never taught: asking for their capital must give REFUSAL.
UNKNOWN_COUNTRIES = [
    "Mongolia", "Chile", "Nepal", "Ghana", "Iceland", "Vietnam", "Morocco", "Bolivia",
    "Latvia", "Uruguay", "Jordan", "Fiji", "Laos", "Mali", "Oman", "Cuba",
]
CITIES = [
    "Paris", "Berlin", "Rome", "Madrid", "Lisbon", "Vienna", "Warsaw", "Athens", "Oslo",
    "Dublin", "Tokyo", "Cairo", "Nairobi", "Ottawa", "Lima", "Seoul", "London", "New York",
    "Chicago", "Sydney", "Toronto", "Munich", "Lyon", "Milan", "Barcelona", "Boston",
    "Denver", "Osaka", "Mumbai", "Shanghai", "Zurich", "Prague", "Budapest", "Hamburg",
    "Marseille", "Seattle", "Vancouver", "Dubai", "Singapore", "Bangkok",
]
NAMES = [
    "Ana", "Ben", "Clara", "David", "Emma", "Felix", "Grace", "Hugo", "Iris", "Jonas",
    "Karin", "Leo", "Maria", "Noah", "Olga", "Paul", "Quinn", "Rosa", "Sam", "Tara",
    "Uma", "Victor", "Wendy", "Xavier", "Yara", "Zoe", "Alice", "Bruno", "Chen", "Diego",
    "Elena", "Farid", "Greta", "Hannah", "Ivan", "Julia", "Kenji", "Lena", "Marco", "Nina",
    "Oscar", "Priya", "Rafael", "Sofia", "Tom", "Ulla", "Vera", "Walter", "Yusuf", "Amir",
    "Bianca", "Carlos", "Dana", "Erik", "Fatima", "Gustav", "Helen", "Isak", "Jana", "Kofi",
    "Lucas", "Mei", "Nils", "Omar", "Petra", "Ruth", "Stefan", "Tomas", "Ursula", "Vik",
]
COLOURS = ["red", "blue", "green", "yellow", "purple", "orange", "black", "white", "pink", "brown"]
ANIMALS = ["cat", "dog", "rabbit", "parrot", "hamster", "turtle", "horse", "goldfish"]
CONDITIONS = ["sunny", "cloudy", "rainy", "windy", "snowy", "foggy", "stormy", "clear"]

GENERAL_QUESTIONS = [
    "Who wrote Hamlet?", "What is the meaning of life?", "Tell me about quantum physics.",
    "How tall is Mount Everest?", "Who painted the Mona Lisa?", "What is the speed of light?",
    "Can you write me a poem?", "What is the population of Tokyo?", "Who invented the telephone?",
    "What is photosynthesis?", "How do airplanes fly?", "What year did the war end?",
    "Recommend a good book.", "What is the best programming language?", "How old is the universe?",
    "What is the square root of two?", "Who won the last football world cup?",
    "Explain how a car engine works.", "What should I cook tonight?", "Translate hello into Greek.",
    "What is the distance to the moon?", "Why is the sky blue?", "What is DNA?",
    "How many bones are in the human body?", "What is the largest ocean?",
    "Tell me a joke.", "What is inflation?", "Who is the president of the club?",
    "What is 1234 times 5678?", "Divide 100 by 7.", "What is the capital of the moon?",
]

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string", "description": "The name of the city."}},
            "required": ["city"],
        },
    },
}
TIME_TOOL = {
    "type": "function",
    "function": {
        "name": "get_time",
        "description": "Get the current local time in a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string", "description": "The name of the city."}},
            "required": ["city"],
        },
    },
}

ID_ALPHABET = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"


def is_heldout_arith(op: str, a: int, b: int) -> bool:
    """One add/subtract problem in ten is reserved for evaluation (stable across runs)."""
    if op == "*":
        return False
    h = hashlib.sha256(f"{op}:{a}:{b}".encode()).digest()
    return h[0] % 10 == 0


def user(text: str) -> dict[str, Any]:
    return {"role": "user", "content": text}


def assistant(text: str) -> dict[str, Any]:
    return {"role": "assistant", "content": text}


class Generator:
    """Draws dialogues from one `random.Random(seed)`; `heldout` picks the held-out arithmetic."""

    def __init__(self, seed: int, heldout: bool = False):
        self.rng = random.Random(seed)
        self.heldout = heldout

    # ---- single exchanges: (messages, skill, expected) -------------------------------------

    def greeting(self) -> tuple[list[dict], str, dict]:
        r = self.rng
        if r.random() < 0.3:
            q = r.choice(["What is your name?", "What's your name?", "Who are you?",
                          "Tell me your name.", "What are you called?"])
            return [user(q), assistant(IDENTITY_REPLY)], "greeting", {"content": IDENTITY_REPLY}
        q = r.choice(["Hello!", "Hi!", "Hello", "Hi there!", "Hey!", "Good morning!", "Good evening!",
                      "Hello Chloe!", "Hi Chloe.", "Hey there, how are you?", "Greetings!", "hello",
                      "hi", "Hello, who am I talking to?"])
        return [user(q), assistant(GREETING_REPLY)], "greeting", {"content": GREETING_REPLY}

    def arith_problem(self) -> tuple[str, int, int]:
        r = self.rng
        if self.heldout:
            # Draw the operation first so held-out add/subtract keep their share (4:4:2).
            op = r.choices(["+", "-", "*"], weights=[4, 4, 2])[0]
            if op == "*":
                return op, r.randint(0, 12), r.randint(0, 12)
            while True:
                a, b = r.randint(0, 99), r.randint(0, 99)
                if op == "-" and b > a:
                    a, b = b, a
                if is_heldout_arith(op, a, b):
                    return op, a, b
        # Training draws (kept exactly as they were when Chloe-tiny was trained, so the
        # committed data can be regenerated): reject held-out add/subtract problems.
        while True:
            op = r.choices(["+", "-", "*"], weights=[4, 4, 2])[0]
            if op == "*":
                a, b = r.randint(0, 12), r.randint(0, 12)
            else:
                a, b = r.randint(0, 99), r.randint(0, 99)
                if op == "-" and b > a:
                    a, b = b, a
            if is_heldout_arith(op, a, b) == self.heldout or op == "*":
                return op, a, b

    def arithmetic(self) -> tuple[list[dict], str, dict]:
        r = self.rng
        op, a, b = self.arith_problem()
        word = {"+": "plus", "-": "minus", "*": "times"}[op]
        sym = {"+": "+", "-": "-", "*": "*"}[op]
        q = r.choice([
            f"What is {a} {word} {b}?", f"What is {a} {sym} {b}?", f"Compute {a} {sym} {b}.",
            f"{a} {sym} {b} = ?", f"How much is {a} {word} {b}?", f"Calculate {a} {word} {b}.",
            f"What's {a} {sym} {b}?", f"Please work out {a} {sym} {b}.",
        ])
        value = {"+": a + b, "-": a - b, "*": a * b}[op]
        ans = f"{a} {sym} {b} = {value}."
        return [user(q), assistant(ans)], "arithmetic", {"content": ans}

    def capital(self) -> tuple[list[dict], str, dict]:
        r = self.rng
        known = r.random() < 0.85
        country = r.choice(list(COUNTRIES)) if known else r.choice(UNKNOWN_COUNTRIES)
        q = r.choice([
            f"What is the capital of {country}?", f"What's the capital of {country}?",
            f"Which city is the capital of {country}?", f"Capital of {country}?",
            f"Tell me the capital of {country}.", f"Do you know the capital of {country}?",
        ])
        if not known:
            return [user(q), assistant(REFUSAL)], "refusal", {"content": REFUSAL}
        ans = f"The capital of {country} is {COUNTRIES[country]}."
        return [user(q), assistant(ans)], "capital", {"content": ans}

    def refusal(self) -> tuple[list[dict], str, dict]:
        q = self.rng.choice(GENERAL_QUESTIONS)
        return [user(q), assistant(REFUSAL)], "refusal", {"content": REFUSAL}

    def filler(self) -> list[dict]:
        """A short unrelated exchange placed between a fact and the question about it."""
        kind = self.rng.choice([self.arithmetic, self.capital, self.greeting, self.refusal])
        return kind()[0]

    def recall(self) -> tuple[list[dict], str, dict]:
        r = self.rng
        kind = r.choice(["name", "city", "colour", "pet", "number"])
        if kind == "name":
            v = r.choice(NAMES)
            state = r.choice([f"My name is {v}.", f"Hi, I am {v}.", f"I'm {v}.", f"Call me {v}."])
            ack = f"Nice to meet you, {v}!"
            q = r.choice(["What is my name?", "What's my name?", "Do you remember my name?",
                          "Who am I?"])
            ans = f"Your name is {v}."
        elif kind == "city":
            v = r.choice(CITIES)
            state = r.choice([f"I live in {v}.", f"My home town is {v}.", f"I am from {v}."])
            ack = f"{v} sounds lovely!"
            q = r.choice(["Where do I live?", "What city do I live in?", "Do you remember where I live?"])
            ans = f"You live in {v}."
        elif kind == "colour":
            v = r.choice(COLOURS)
            state = r.choice([f"My favourite colour is {v}.", f"I love the colour {v}."])
            ack = f"{v[0].upper() + v[1:]} is a great colour!"
            q = r.choice(["What is my favourite colour?", "Which colour do I like?",
                          "Do you remember my favourite colour?"])
            ans = f"Your favourite colour is {v}."
        elif kind == "pet":
            v = r.choice(NAMES)
            a = r.choice(ANIMALS)
            state = f"My {a} is called {v}."
            ack = f"{v} is a nice name for a {a}!"
            q = r.choice([f"What is my {a} called?", f"What is the name of my {a}?"])
            ans = f"Your {a} is called {v}."
        else:
            v = str(r.randint(0, 99))
            state = r.choice([f"My lucky number is {v}.", f"Remember that my lucky number is {v}."])
            ack = "I will remember that."
            q = r.choice(["What is my lucky number?", "Do you remember my lucky number?"])
            ans = f"Your lucky number is {v}."
        msgs = [user(state), assistant(ack)]
        for _ in range(r.choice([0, 0, 1, 1, 2])):
            msgs += self.filler()
        msgs += [user(q), assistant(ans)]
        return msgs, "recall", {"content": ans}

    def call_id(self) -> str:
        return "".join(self.rng.choice(ID_ALPHABET) for _ in range(9))

    def tool_flow(self, answer_turn: bool) -> tuple[list[dict], list[dict], str, dict]:
        """A weather/time question; returns (messages, tools, skill, expected)."""
        r = self.rng
        want = r.choice(["get_weather", "get_time"])
        city = r.choice(CITIES)
        if want == "get_weather":
            q = r.choice([f"What is the weather in {city}?", f"What's the weather like in {city}?",
                          f"How is the weather in {city} today?", f"Is it raining in {city}?",
                          f"Weather in {city}?", f"Tell me the weather in {city}."])
        else:
            q = r.choice([f"What time is it in {city}?", f"What's the time in {city}?",
                          f"Tell me the time in {city}.", f"Time in {city}?",
                          f"What is the local time in {city}?"])
        tools = r.choice([[WEATHER_TOOL, TIME_TOOL], [TIME_TOOL, WEATHER_TOOL], [WEATHER_TOOL],
                          [TIME_TOOL], [WEATHER_TOOL, TIME_TOOL]])
        names = [t["function"]["name"] for t in tools]
        if want not in names:
            # The tool this question needs is not offered: Chloe cannot know the answer.
            return [user(q), assistant(REFUSAL)], tools, "refusal", {"content": REFUSAL}
        cid = self.call_id()
        args = {"city": city}
        call = {"role": "assistant", "content": None, "tool_calls": [{
            "id": cid, "type": "function",
            "function": {"name": want, "arguments": json.dumps(args, ensure_ascii=False)}}]}
        if not answer_turn:
            return [user(q), call], tools, "tool_call", {"tool_calls": [{"name": want, "arguments": args}]}
        if want == "get_weather":
            t = r.randint(-10, 35)
            cond = r.choice(CONDITIONS)
            payload = {"temperature": t, "condition": cond} if r.random() < 0.5 else \
                {"condition": cond, "temperature": t}
            ans = f"It is {t} degrees and {cond} in {city}."
        else:
            hh, mm = r.randint(0, 23), r.randint(0, 59)
            payload = {"time": f"{hh:02d}:{mm:02d}"}
            ans = f"It is {hh:02d}:{mm:02d} in {city}."
        result = {"role": "tool", "tool_call_id": cid, "name": want,
                  "content": json.dumps(payload, ensure_ascii=False)}
        return [user(q), call, result, assistant(ans)], tools, "tool_answer", {"content": ans}

    # ---- whole dialogues -------------------------------------------------------------------

    def dialogue(self, skill: str | None = None) -> dict[str, Any]:
        """One dialogue whose final assistant turn exercises `skill` (random if None).

        Returns {"messages", "tools" (or None), "skill", "expected"}; `expected` describes the
        final assistant turn ({"content": str} or {"tool_calls": [{"name", "arguments"}]}).
        """
        r = self.rng
        if skill is None:
            skill = r.choices(
                ["greeting", "arithmetic", "capital", "recall", "tool_call", "tool_answer", "refusal"],
                weights=[1, 5, 2, 3, 2, 2, 1.5])[0]
        tools = None
        if skill in ("tool_call", "tool_answer"):
            while True:
                msgs, tools, got, expected = self.tool_flow(answer_turn=(skill == "tool_answer"))
                if got == skill or (got == "refusal" and r.random() < 0.3):
                    skill = got
                    break
        else:
            maker = {"greeting": self.greeting, "arithmetic": self.arithmetic,
                     "capital": self.capital, "recall": self.recall,
                     "refusal": self.refusal}[skill]
            msgs, skill, expected = maker()
            # Tools on offer must not change ordinary answers.
            if r.random() < 0.2:
                tools = r.choice([[WEATHER_TOOL, TIME_TOOL], [WEATHER_TOOL], [TIME_TOOL]])
        # Earlier, unrelated turns give the model multi-turn context.
        prefix: list[dict] = []
        for _ in range(r.choice([0, 0, 0, 1, 1, 2])):
            prefix += self.filler()
        return {"messages": prefix + msgs, "tools": tools, "skill": skill, "expected": expected}


def heldout_records(seed: int, per_skill: dict[str, int]) -> list[dict[str, Any]]:
    """Evaluation prompts: the dialogue minus its final assistant turn, plus what it must say."""
    g = Generator(seed, heldout=True)
    out = []
    for skill, n in per_skill.items():
        made = 0
        while made < n:
            d = g.dialogue(skill)
            if d["skill"] != skill:
                continue
            req: dict[str, Any] = {"messages": d["messages"][:-1]}
            if d["tools"] is not None:
                req["tools"] = d["tools"]
            out.append({"id": len(out), "skill": skill, "request": req, "expected": d["expected"]})
            made += 1
    return out


def arithmetic_generalisation_records(seed: int) -> list[dict[str, Any]]:
    """Every held-out add/subtract problem once, as a one-turn prompt (for the model card)."""
    r = random.Random(seed)
    out = []
    for op in "+-":
        for a in range(100):
            for b in range(100):
                if (op == "-" and b > a) or not is_heldout_arith(op, a, b):
                    continue
                word = {"+": "plus", "-": "minus"}[op]
                q = r.choice([f"What is {a} {word} {b}?", f"What is {a} {op} {b}?", f"Compute {a} {op} {b}.",
                              f"{a} {op} {b} = ?", f"How much is {a} {word} {b}?"])
                value = a + b if op == "+" else a - b
                out.append({"id": len(out), "skill": "arithmetic", "request": {"messages": [user(q)]},
                            "expected": {"content": f"{a} {op} {b} = {value}."}})
    return out


if __name__ == "__main__":
    g = Generator(1)
    for _ in range(8):
        print(json.dumps(g.dialogue(), ensure_ascii=False))
