// The page's session choices: hold-to-talk or hands-free (the hello's `turns`), the workflow and the
// character (the hello's `workflow` and `character`). They are kept across reloads (localStorage); changing
// one opens a new session, since a hello's choices hold for its whole session.

export const WORKFLOWS = ["conversation", "say", "puppet", "lipsync"];
/** Workflows where the player's own voice drives the face: no reply audio, no typed text. */
export const AUDIO_DRIVEN = ["puppet", "lipsync"];
const PREFS_KEY = "facecast.prefs";

const $ = (id) => document.getElementById(id);

const HINTS = {
  conversation: "talking over the character interrupts it.",
  say: "the character says your words as they are (typed too).",
  puppet: "your voice drives the face live; nothing is said back.",
  lipsync: "the face frames of your audio come back, lip-synced.",
};

/** The stored choices into `fc` (`workflow`, `character`, `handsFree`); the defaults where none are stored. */
export function loadPrefs(fc) {
  try {
    const prefs = JSON.parse(localStorage.getItem(PREFS_KEY) || "{}");
    if (WORKFLOWS.includes(prefs.workflow)) fc.workflow = prefs.workflow;
    if (typeof prefs.character === "string") fc.character = prefs.character;
    fc.handsFree = prefs.handsFree === true;
  } catch {
    // storage blocked or garbled: the defaults
  }
}

export function savePrefs(fc) {
  try {
    localStorage.setItem(PREFS_KEY, JSON.stringify({
      workflow: fc.workflow, character: fc.character, handsFree: fc.handsFree,
    }));
  } catch {
    // storage blocked: the choice lasts for this page only
  }
}

/** The hello fields for the choices in `fc`. */
export function helloChoices(fc) {
  // Hold-to-talk: the page says when a turn ends (end_of_speech on release), so a pause while the button is
  // held is not the end of the turn. Hands-free: the server's VAD finds the turns in the stream.
  const choices = { turns: fc.handsFree ? "server" : "client", workflow: fc.workflow };
  if (fc.character) choices.character = fc.character;
  return choices;
}

/** Show the choices in `fc`: the selectors, the checkbox, the hint, and what the message box takes. */
export function renderChoices(fc) {
  const audioDriven = AUDIO_DRIVEN.includes(fc.workflow);
  $("workflow").value = fc.workflow;
  $("handsfree").checked = fc.handsFree;
  document.body.classList.toggle("hands-free", fc.handsFree);
  const select = $("character");
  if (fc.character && ![...select.options].some((o) => o.value === fc.character)) {
    select.append(new Option(fc.character, fc.character)); // the stored choice, until the list arrives
  }
  select.value = fc.character;
  const how = fc.handsFree
    ? "Hands-free: just speak; the server hears when you start and stop —"
    : "Hold the button or the space bar while you speak, and let go when you are done —";
  $("talk-hint").textContent = `${how} ${HINTS[fc.workflow]}`;
  const input = $("text");
  input.disabled = audioDriven;
  input.placeholder = audioDriven
    ? `Typing is not used by the ${fc.workflow} workflow: speak instead`
    : fc.workflow === "say" ? "…or type what the character should say and press Enter"
      : "…or type a message and press Enter";
  $("typed").querySelector("button").disabled = audioDriven;
}

/**
 * The server's character names (GET /characters, with the page's token), or null when it has no list
 * (an older server, or no access).
 */
export async function fetchCharacters(token) {
  const url = new URL("characters", location.href);
  url.search = "";
  try {
    const headers = token ? { Authorization: `Bearer ${token}` } : {};
    const response = await fetch(url, { headers, cache: "no-store" });
    if (!response.ok) return null;
    const names = (await response.json()).characters;
    return Array.isArray(names) ? names.filter((n) => typeof n === "string") : null;
  } catch {
    return null;
  }
}

/** The character selector: the server's default, then `names`; shown when there is a choice to make. */
export function renderCharacters(fc, names) {
  const select = $("character");
  select.replaceChildren(new Option("Server default", ""), ...names.map((n) => new Option(n, n)));
  if (fc.character && !names.includes(fc.character)) select.append(new Option(fc.character, fc.character));
  select.value = fc.character;
  $("character-field").hidden = names.length === 0 && !fc.character;
}
