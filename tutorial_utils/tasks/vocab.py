"""Word lists shared by the task datasets and the offline model's training corpus.

One definition of each task's vocabulary, so that the corpus the offline model is trained on
and the prompts it is evaluated on cannot drift apart. Every list is split into a ``train``
part (words the corpus uses in that task's sentences) and a ``heldout`` part (words the corpus
never puts in that task's sentences; they still occur in generic filler sentences, so their
embeddings are trained). Evaluation on ``heldout`` words therefore tests the rule, not a
memorised template.

Every word here is a single token for GPT-2's tokenizer when preceded by a space (checked by
``tests/test_tasks.py`` against the real GPT-2 vocabulary shipped in ``data/gpt2_tokenizer``).
"""

from __future__ import annotations

from ..errors import TutorialError

from dataclasses import dataclass


@dataclass(frozen=True)
class Split:
    """A word list split into the part used in task training sentences and a held-out part."""

    train: tuple[str, ...]
    heldout: tuple[str, ...]

    @property
    def all(self) -> tuple[str, ...]:
        return self.train + self.heldout

    def get(self, which: str) -> tuple[str, ...]:
        """Return ``train``, ``heldout`` or ``all`` words."""
        if which not in ("train", "heldout", "all"):
            raise TutorialError(f"split must be 'train', 'heldout' or 'all', got {which!r}")
        return getattr(self, which)


# --- Indirect Object Identification -------------------------------------------------------
#: Names for IOI. The first 66 are the course's classic names (Mary, John, ...); the rest are
#: US first names (drawn from the Faker package's en_US list, filtered to single GPT-2 tokens
#: with a leading space and to words that are not also common nouns, months or places).
#: ``train`` names (200) occur in the offline corpus's IOI sentences; ``heldout`` names (276)
#: never do, only in filler sentences, so a model can score well on them only by *copying* a
#: name from the context (Wang et al. 2023's name movers), not by memorising it.
NAMES = Split(
    train=tuple(
        "Mary John Tom James Dan Sid Martin Amy Paul Kate Anna Lisa Mark Sarah David Laura "
        "Peter Emma Jack Rose Ben Alice Sam Lucy Henry Grace Adam Jane Eric Ruth Frank Helen "
        "George Alan Carl Diana Victor Clara Oscar Julia Simon Nora Hugo Max Ivy Leo".split()
    ) + tuple("""
        Adrian Albert Alex Alexander Alexis Alison Angela Anita Anthony Ariel Arthur Ashley
        Audrey Beverly Blake Bryan Bryce Carlos Carmen Caroline Casey Cassidy Catherine
        Cathy Chad Christina Christopher Christy Cindy Claire Clarence Clayton Clinton
        Connie Connor Curtis Dale Dalton Damon Daniel Darrell Denise Dennis Derrick Diamond
        Donald Donna Dorothy Dustin Eddie Edwin Elijah Elizabeth Erin Evan Francisco Gabriel
        Geoffrey Gilbert Gina Gordon Haley Howard Isabel Jackie Jake Jamie Jason Jeanne Jeff
        Jeffrey Jerome Jessica Jesus Jimmy Jo Johnny Jonathan Jorge Joyce Juan Judy Julie
        Kathryn Katrina Keith Kenneth Kent Kerry Kevin Kimberly Kristen Kyle Leah Lindsay
        Lindsey Logan Lori Lucas Malik Manuel Marie Marilyn Martha Mason Meredith Michael
        Michelle Mitchell Molly Monica Nancy Nicolas Paige Pam Parker Patricia Patrick Pedro
        Philip Preston Rebecca Roberto Rodney Roger Ronald Ross Samantha Sandra Sara Shawn
        Sierra Stephen Stuart Susan Suzanne Tara Taylor Teresa Terry Theresa Thomas Tim
        Tommy Travis Trevor Valerie Vernon Victoria Vincent Warren Wendy William Wyatt
    """.split()),
    heldout=tuple(
        "Eva Ryan Nina Luke Tina Joe Beth Roy Kim Ray Jill Ted Meg Ian Sue Fred Anne Neil "
        "Jean Greg".split()
    ) + tuple("""
        Aaron Alec Alexa Alexandra Alexandria Alfred Alicia Allen Allison Alvin Amanda Ana
        Andre Andrea Andrew Ann Antonio Barbara Barry Becky Benjamin Bernard Betty Billy
        Bobby Bonnie Brad Bradley Brady Brandon Brenda Brendan Brent Brett Brian Brittany
        Brooke Bruce Caleb Calvin Cameron Carly Carol Carolyn Carrie Cassandra Charles
        Charlotte Cheryl Chloe Chris Christian Christie Christine Claudia Clifford Cody Cole
        Colin Corey Cory Courtney Craig Cynthia Dakota Dana Danielle Danny Darius Darren
        Daryl Dave Debbie Deborah Derek Devin Devon Diane Dillon Dominic Douglas Dylan Edgar
        Edward Elaine Ellen Emily Erica Erik Ernest Ethan Eugene Fernando Frances Francis
        Franklin Frederick Garrett Gary Gavin Gerald Glen Glenn Gloria Gregg Gregory Hannah
        Harold Harry Hayden Hector Heidi Herbert Isaac Isaiah Ivan Jackson Jacob Jaime Janet
        Jared Javier Jay Jenna Jennifer Jenny Jeremiah Jeremy Jerry Jesse Jim Joan Joel Jon
        Jose Joseph Joshua Judith Julian Justin Kara Karen Karl Katherine Kathleen Kathy
        Katie Kelly Kirk Kurt Larry Lauren Laurie Lawrence Lee Leon Leonard Leslie Levi
        Linda Louis Luis Lydia Lynn Marc Marco Marcus Margaret Maria Mario Matthew Maurice
        Maxwell Megan Melanie Melissa Melvin Mercedes Mia Michele Miguel Mike Miranda Morgan
        Natalie Natasha Nathan Nathaniel Nicholas Nicole Noah Olivia Omar Pamela Patty Paula
        Peggy Perry Phillip Rachel Ralph Randall Raven Raymond Regina Ricardo Richard Rick
        Ricky Riley Rita Robert Robin Ronnie Russell Sally Samuel Scott Sean Sergio Seth
        Shane Shannon Sharon Shaun Sheila Shelby Shelley Shirley Sonia Sophia Spencer Stacy
        Stanley Stephanie Steve Steven Sylvia Tammy Tanner Theodore Tiffany Timothy Todd
        Tony Tracy Troy Vanessa Veronica Walter Wayne Wesley Whitney Willie Xavier Zoe
    """.split()),
)

IOI_PLACES = Split(
    train=tuple("store park school office station market garden beach library museum".split()),
    heldout=tuple("restaurant hospital".split()),
)

IOI_OBJECTS = Split(
    train=tuple("drink book ball letter key ring bag hat cake gift".split()),
    heldout=tuple("snack necklace".split()),
)

# --- Greater-Than ---------------------------------------------------------------------------
EVENT_NOUNS = Split(
    train=tuple(
        "war siege drought famine reign dynasty empire crisis conflict revolution occupation "
        "rebellion expedition voyage journey pilgrimage campaign alliance treaty truce embargo "
        "blockade boom recession depression plague epidemic trial marriage friendship rivalry "
        "feud dispute strike protest".split()
    ),
    heldout=tuple(
        "project program study survey tour festival exhibition construction renovation "
        "excavation monarchy regime".split()
    ),
)

#: Centuries used for Greater-Than years ("1741" is century "17" + two digits "41").
CENTURIES: tuple[int, ...] = (11, 12, 13, 14, 15, 16, 17, 18)

# --- Subject-verb agreement -----------------------------------------------------------------
#: (singular, plural) noun pairs used as subjects and as attractors.
SVA_NOUNS = Split(
    train=tuple(
        tuple(p.split(":"))  # type: ignore[misc]
        for p in (
            "key:keys dog:dogs cat:cats book:books car:cars house:houses tree:trees bird:birds "
            "girl:girls boy:boys man:men woman:women child:children teacher:teachers "
            "doctor:doctors student:students friend:friends farmer:farmers king:kings "
            "queen:queens letter:letters picture:pictures table:tables chair:chairs door:doors "
            "window:windows flower:flowers horse:horses song:songs road:roads river:rivers "
            "box:boxes bottle:bottles lamp:lamps cabinet:cabinets desk:desks"
        ).split()
    ),
    heldout=tuple(
        tuple(p.split(":"))  # type: ignore[misc]
        for p in (
            "painting:paintings report:reports author:authors player:players singer:singers "
            "officer:officers worker:workers driver:drivers pilot:pilots nurse:nurses "
            "lawyer:lawyers shelf:shelves"
        ).split()
    ),
)

#: (singular, plural) verb forms scored by the agreement metric.
SVA_VERBS: tuple[tuple[str, str], ...] = (
    ("is", "are"),
    ("was", "were"),
    ("has", "have"),
    ("does", "do"),
    ("seems", "seem"),
    ("looks", "look"),
)

#: Complements that can follow each singular verb form (and its plural) in corpus sentences.
SVA_COMPLEMENTS: dict[str, tuple[str, ...]] = {
    "is": ("old", "new", "red", "small", "large", "here", "ready", "broken", "clean", "quiet"),
    "was": ("old", "new", "red", "small", "large", "here", "ready", "broken", "clean", "quiet"),
    "has": ("a name", "a story", "a problem", "a secret", "a home"),
    "does": ("not move", "not work", "well", "nothing"),
    "seems": ("old", "new", "happy", "tired", "ready", "quiet"),
    "looks": ("old", "new", "happy", "tired", "ready", "clean"),
}

# --- Facts ----------------------------------------------------------------------------------
#: Country -> capital; all single tokens for GPT-2 and the offline tokenizer.
CAPITALS: dict[str, str] = {
    "France": "Paris",
    "Germany": "Berlin",
    "Italy": "Rome",
    "Spain": "Madrid",
    "Japan": "Tokyo",
    "China": "Beijing",
    "Russia": "Moscow",
    "Egypt": "Cairo",
    "England": "London",
    "Greece": "Athens",
    "Ireland": "Dublin",
    "Austria": "Vienna",
    "Poland": "Warsaw",
    "Norway": "Oslo",
    "Sweden": "Stockholm",
    "Canada": "Ottawa",
    "Cuba": "Havana",
    "Peru": "Lima",
    "Scotland": "Edinburgh",
    "Turkey": "Ankara",
}

# --- Filler vocabulary ----------------------------------------------------------------------
ADJECTIVES: tuple[str, ...] = tuple(
    "old new red blue green small large happy tired quiet busy clean broken ready warm cold "
    "bright dark early late".split()
)
