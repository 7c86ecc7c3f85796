// The conversation pane (the player's and the character's lines, notes) and the banners over the face.

export class TranscriptPane {
  /**
   * @param {HTMLElement} pane the scrolling list of lines
   * @param {HTMLElement} emptyHint shown until the first line
   * @param {object[]} lines where each finished line is recorded ({who, text, utterance, typed, at})
   */
  constructor(pane, emptyHint, lines) {
    this.pane = pane;
    this.emptyHint = emptyHint;
    this.lines = lines;
  }

  /**
   * A line of `who` ("player" | "character"). A character line with `options.utterance` grows with each
   * sentence of that reply; a `partial` line is the player's live transcript, kept last until its final.
   */
  add(who, text, options = {}) {
    const pane = this.pane;
    let line = null;
    if (who === "character" && options.utterance !== undefined) {
      line = pane.querySelector(`.line.character[data-utterance="${options.utterance}"]`);
    }
    if (line) {
      const span = line.querySelector(".text");
      span.textContent = `${span.textContent} ${text}`.trim();
    } else {
      line = document.createElement("div");
      line.className = `line ${who}${options.partial ? " partial" : ""}${options.typed ? " typed" : ""}`;
      if (options.utterance !== undefined) line.dataset.utterance = options.utterance;
      const name = document.createElement("span");
      name.className = "who";
      name.textContent = who === "player" ? "You" : "Character";
      const span = document.createElement("span");
      span.className = "text";
      span.textContent = text;
      line.append(name, span);
      const live = pane.querySelector(".line.partial");
      if (live && !options.partial) pane.insertBefore(line, live);
      else pane.append(line);
    }
    if (!options.partial) {
      this.lines.push({
        who, text, utterance: options.utterance ?? null, typed: !!options.typed, at: performance.now(),
      });
    }
    pane.scrollTop = pane.scrollHeight;
    this.emptyHint.hidden = true;
    return line;
  }

  note(text) {
    const note = document.createElement("div");
    note.className = "line note";
    note.textContent = text;
    this.pane.append(note);
    this.pane.scrollTop = this.pane.scrollHeight;
  }

  /** Mark the reply `id` (default: the latest) as cut short. */
  markInterrupted(id) {
    const lines = id === undefined ? this.pane.querySelectorAll(".line.character")
      : this.pane.querySelectorAll(`.line.character[data-utterance="${id}"]`);
    const line = lines[lines.length - 1];
    if (line) line.classList.add("interrupted");
  }

  /** A new session numbers its utterances from 1 again: the earlier lines no longer answer to theirs. */
  forgetUtterances() {
    for (const line of this.pane.querySelectorAll(".line[data-utterance]")) delete line.dataset.utterance;
  }
}

export class Banners {
  /** @param {HTMLElement} el the banner box; one paragraph per shown banner, hidden when there is none */
  constructor(el) {
    this.el = el;
    this.shown = new Map();
  }

  show(key, text) {
    this.shown.set(key, text);
    this.render();
  }

  hide(key) {
    this.shown.delete(key);
    this.render();
  }

  render() {
    this.el.hidden = this.shown.size === 0;
    this.el.replaceChildren(...[...this.shown].map(([key, text]) => {
      const p = document.createElement("p");
      p.dataset.kind = key;
      p.textContent = text;
      return p;
    }));
  }
}
