// The API key prompt: asked once per browser session, kept in sessionStorage.
//
// Whether the server wants a key is learnt from the API itself: cancelling a job id that
// does not exist answers 401 when a key is needed and missing or wrong, and 404 otherwise
// (the key check comes before the lookup), and changes nothing.

import { ApiError, api, apiKey, onUnauthorized, setApiKey } from "./api.js";

const CHECKED = "tinyres.keyChecked";
const PROBE = "jobs/dashboard-key-check/cancel";

async function keyAccepted() {
  try {
    await api(PROBE, { method: "POST", headers: { "X-Dashboard-Probe": "1" } });
    return true;
  } catch (error) {
    return !(error instanceof ApiError && error.status === 401);
  }
}

function elements() {
  return {
    dialog: document.getElementById("key-dialog"),
    form: document.getElementById("key-form"),
    input: document.getElementById("key-input"),
    error: document.getElementById("key-error"),
    reason: document.getElementById("key-reason"),
    cancel: document.getElementById("key-cancel"),
  };
}

export function askForKey(reason) {
  const { dialog, input, error, reason: text } = elements();
  text.textContent = reason || "This server needs an API key for changes (TINYRES_API_KEY).";
  error.textContent = "";
  input.value = apiKey() || "";
  if (!dialog.open) dialog.showModal();
  input.focus();
}

/** Wire the dialog; `onChange` runs after a key was accepted (to redraw the page). */
export function setUpKeyPrompt(onChange) {
  const { dialog, form, input, error, cancel } = elements();
  let probing = false;
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (probing) return;
    probing = true;
    setApiKey(input.value.trim());
    const accepted = await keyAccepted();
    probing = false;
    if (!accepted) {
      error.textContent = "wrong key: the server refused it.";
      input.setAttribute("aria-invalid", "true");
      input.focus();
      return;
    }
    input.removeAttribute("aria-invalid");
    sessionStorage.setItem(CHECKED, "1");
    document.getElementById("banner").hidden = true;
    dialog.close();
    onChange();
  });
  cancel.addEventListener("click", () => dialog.close());
  document.getElementById("key-button").addEventListener("click", () => askForKey("Set the API key for this browser session."));
  onUnauthorized(() => {
    const banner = document.getElementById("banner");
    banner.textContent = apiKey()
      ? "wrong key: the server refused the API key. Use the “API key” button to change it."
      : "This server needs an API key: use the “API key” button.";
    banner.hidden = false;
    if (!dialog.open) askForKey(apiKey() ? "wrong key: the server refused the API key." : undefined);
  });
}

/** Once per session: ask for a key if the server needs one. */
export async function checkKeyOnce() {
  if (sessionStorage.getItem(CHECKED)) return;
  if (await keyAccepted()) sessionStorage.setItem(CHECKED, "1");
  else askForKey(apiKey() ? "wrong key: the server refused the API key." : undefined);
}
