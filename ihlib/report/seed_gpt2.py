"""GPT-2 small's head scores as the seed notebook printed them: quoted on the pages, never recomputed here."""

from __future__ import annotations

SEED_FILE = "seed/000_6a7aa5239ef33785.txt"  # the seed notebook's text, in the repository
SEED_SETTING = {"seg_len": 5, "rep": 3}  # the seed's T0 = 5 random tokens repeated 3 times, one sequence

# Printed by the seed, not recomputed: GPT-2 small's top heads and scores as the seed notebook printed them
# (seed/000_6a7aa5239ef33785.txt, cell In [5] "Step 1-1-4" for induction and cell In [6] "Step 1-1-5" for
# shifting), on one sequence of 5 random tokens repeated 3 times. ([layer, head], score), best first.
SEED_GPT2_TOP: dict[str, list[tuple[tuple[int, int], float]]] = {
    "induction": [
        ((5, 1), 0.9953718118369579),
        ((5, 5), 0.990281829237938),
        ((6, 9), 0.9886472076177597),
        ((7, 10), 0.9395123064517975),
        ((5, 8), 0.9212846681475639),
        ((10, 7), 0.9204489514231682),
        ((5, 0), 0.8876477140933275),
        ((7, 2), 0.8102711588144302),
        ((10, 1), 0.8059151142835617),
        ((9, 9), 0.7934778571128845),
    ],
    "shifting": [
        ((4, 11), 0.9993197276042058),
        ((5, 6), 0.7670074793008658),
        ((6, 8), 0.744445766393955),
        ((3, 7), 0.6400530796784621),
        ((3, 3), 0.5796717221920307),
        ((2, 2), 0.5276686285550778),
        ((7, 0), 0.5010625811723562),
        ((2, 5), 0.4850600384748899),
        ((3, 2), 0.4379009088644615),
        ((3, 8), 0.42955268919467926),
    ],
}
