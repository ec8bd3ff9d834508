"""An interactive view of every head's attention that works offline: one self-contained HTML block (inline data,
inline script, no CDN) that a notebook displays and the built site keeps.

Hovering a token of the sequence makes it the query: every head's panel then shows, as a strip of shaded cells,
how much attention that query pays to each earlier token, and the tokens of the sequence are shaded by the selected
head's attention (hover a head's panel to select it; the top induction head at first). Panels are framed in the
colour of the head's kind by the book's counting rule, as in the gallery figure.
"""

from __future__ import annotations

import hashlib
import json

import numpy as np
from IPython.display import HTML
from matplotlib.colors import to_hex

from ihlib.heads.head_table import HeadTable
from ihlib.heads.scoring import AttentionExample
from ihlib.model.head_ids import head_label
from ihlib.report.attention_gallery import ROLE_COLOURS, attention_grid

PERCENT = 100  # attention weights are stored as whole percents, to keep the page small


def view_data(example: AttentionExample, kinds: HeadTable, *, selected: list[int] | None = None) -> dict:
    """What the view's script reads: tokens, `att[layer][head][query][key]` in whole percents, kinds, labels and
    the head selected at first (`selected`, else the head with the highest induction score that counts)."""
    roles = kinds.roles()
    n_layer, n_head = roles.shape
    grid = attention_grid(example, n_layer, n_head)
    first = selected or _first_selected(kinds)
    return {
        "tokens": [str(int(token)) for token in example.input_ids],
        "seg_len": int(example.seg_len),
        "att": np.rint(grid * PERCENT).astype(int).tolist(),
        "roles": roles.tolist(),
        "labels": [[head_label(layer, head) for head in range(n_head)] for layer in range(n_layer)],
        "colours": {role: to_hex(colour) for role, colour in ROLE_COLOURS.items()},
        "selected": [int(first[0]), int(first[1])],
        "model": example.model,
    }


def attention_view(example: AttentionExample, kinds: HeadTable, *, selected: list[int] | None = None) -> HTML:
    """The self-contained HTML view (see the module's docstring) of every head's attention in `example`."""
    return HTML(attention_view_html(example, kinds, selected=selected))


def attention_view_html(example: AttentionExample, kinds: HeadTable, *, selected: list[int] | None = None) -> str:
    """The view as an HTML string: a `<div class="ihav">` with its own `<style>` and `<script>`, nothing fetched."""
    data = json.dumps(view_data(example, kinds, selected=selected), separators=(",", ":")).replace("</", "<\\/")
    view_id = "ihav-" + hashlib.sha256(data.encode()).hexdigest()[:10]
    return (
        f'<div class="ihav" id="{view_id}" data-query="">'
        f"<style>{_CSS.replace('ROOT', '#' + view_id)}</style>"
        '<p class="ihav-help">Hover a token to make it the query; hover a head to shade the tokens by its attention.'
        ' <span class="ihav-status"></span></p>'
        '<div class="ihav-tokens"></div><div class="ihav-grid"></div>'
        f'<script type="application/json" class="ihav-data">{data}</script>'
        f"<script>{_SCRIPT.replace('VIEW_ID', view_id)}</script>"
        "</div>"
    )


def _first_selected(kinds: HeadTable) -> list[int]:
    """The head the view selects at first: the first induction head that counts (layer by layer), else L0H0."""
    found = np.argwhere(kinds.is_induction)
    return [int(found[0][0]), int(found[0][1])] if len(found) else [0, 0]


_CSS = """
ROOT { font-size: 13px; max-width: 100%; padding: 2px 4px; box-sizing: border-box; }
ROOT .ihav-tokens { display: flex; flex-wrap: wrap; gap: 2px; margin: 4px 0 8px; }
ROOT .ihav-token { padding: 1px 3px; border: 1px solid #ccc; border-radius: 3px; cursor: default;
  font-family: monospace; min-width: 2.2em; text-align: center; }
ROOT .ihav-token.ihav-query { outline: 2px solid #d62728; }
ROOT .ihav-token.ihav-copy-start { margin-left: 8px; }
ROOT .ihav-grid { display: grid; gap: 3px; }
ROOT .ihav-layer { font-size: 11px; align-self: center; white-space: nowrap; }
ROOT .ihav-head { border: 2px solid; border-radius: 2px; padding: 1px; cursor: pointer; }
ROOT .ihav-head.ihav-selected { box-shadow: 0 0 0 2px #d62728; }
ROOT .ihav-name { font-size: 10px; line-height: 1.1; }
ROOT .ihav-strip { display: flex; height: 14px; }
ROOT .ihav-cell { flex: 1 1 0; }
"""

_SCRIPT = """
(function () {
  const root = document.getElementById("VIEW_ID");
  const data = JSON.parse(root.querySelector(".ihav-data").textContent);
  const nLayer = data.att.length, nHead = data.att[0].length, T = data.tokens.length;
  const tokenBox = root.querySelector(".ihav-tokens"), grid = root.querySelector(".ihav-grid");
  const status = root.querySelector(".ihav-status");
  let query = T - 1, selected = data.selected;
  const tokens = data.tokens.map(function (text, pos) {
    const span = document.createElement("span");
    span.className = "ihav-token" + (pos > 0 && pos % data.seg_len === 0 ? " ihav-copy-start" : "");
    span.textContent = text;
    span.dataset.pos = pos;
    span.addEventListener("mouseenter", function () { query = pos; draw(); });
    tokenBox.appendChild(span);
    return span;
  });
  grid.style.gridTemplateColumns = "4.5em repeat(" + nHead + ", minmax(0, 1fr))";
  const strips = [];
  for (let layer = 0; layer < nLayer; layer++) {
    const name = document.createElement("div");
    name.className = "ihav-layer";
    name.textContent = "layer " + layer;
    grid.appendChild(name);
    strips.push([]);
    for (let head = 0; head < nHead; head++) {
      const box = document.createElement("div");
      const role = data.roles[layer][head];
      box.className = "ihav-head";
      box.dataset.layer = layer;
      box.dataset.head = head;
      box.style.borderColor = data.colours[role];
      box.title = data.labels[layer][head] + " (" + role + ")";
      const label = document.createElement("div");
      label.className = "ihav-name";
      label.textContent = data.labels[layer][head];
      const strip = document.createElement("div");
      strip.className = "ihav-strip";
      const cells = [];
      for (let key = 0; key < T; key++) {
        const cell = document.createElement("div");
        cell.className = "ihav-cell";
        strip.appendChild(cell);
        cells.push(cell);
      }
      box.appendChild(label);
      box.appendChild(strip);
      box.addEventListener("mouseenter", function () { selected = [layer, head]; draw(); });
      grid.appendChild(box);
      strips[layer].push({ box: box, cells: cells });
    }
  }
  function shade(weight) { return "rgba(31, 119, 180, " + (weight / 100).toFixed(2) + ")"; }
  function draw() {
    for (let layer = 0; layer < nLayer; layer++) {
      for (let head = 0; head < nHead; head++) {
        const row = data.att[layer][head][query], panel = strips[layer][head];
        panel.cells.forEach(function (cell, key) { cell.style.background = shade(row[key]); });
        panel.box.classList.toggle("ihav-selected", layer === selected[0] && head === selected[1]);
      }
    }
    const row = data.att[selected[0]][selected[1]][query];
    let best = 0;
    tokens.forEach(function (span, key) {
      span.style.background = shade(row[key]);
      span.classList.toggle("ihav-query", key === query);
      if (row[key] > row[best]) { best = key; }
    });
    root.dataset.query = query;
    root.dataset.selected = selected[0] + "," + selected[1];
    root.dataset.strongest = best;
    status.textContent = "query: token " + query + " (" + data.tokens[query] + "); " +
      data.labels[selected[0]][selected[1]] + " attends most to token " + best + " (" + row[best] + "%).";
  }
  draw();
})();
"""
