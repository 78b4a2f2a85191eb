// FastAPI's 422 answers name the field in `loc` (["body", "width", ...]): each message is
// shown under that field. Model-level errors (loc ["body"]) are shown under the field their
// message names ("... Received: width=6"), else above the submit button.

import { ApiError, describe } from "./api.js";

/**
 * Clear old messages, then show those of `error` (null: just clear).
 * ids: field name -> input id (the message goes to `${id}-error`). Returns true if shown.
 */
export function showFieldErrors(form, ids, formErrorId, error) {
  for (const id of Object.values(ids)) {
    const input = form.querySelector(`#${id}`);
    input?.removeAttribute("aria-invalid");
    const slot = form.querySelector(`#${id}-error`);
    if (slot) slot.textContent = "";
  }
  const formError = form.querySelector(`#${formErrorId}`);
  formError.textContent = "";
  if (!error) return false;
  if (!(error instanceof ApiError) || error.status !== 422 || !Array.isArray(error.detail)) {
    formError.textContent = describe(error);
    return true;
  }
  let first = null;
  for (const item of error.detail) {
    const loc = Array.isArray(item.loc) ? item.loc : [];
    let name = loc[0] === "body" ? loc[1] : undefined;
    if (name === undefined) name = (String(item.msg).match(/Received: (\w+)=/) || [])[1];
    const id = ids[name];
    const slot = id && form.querySelector(`#${id}-error`);
    if (!slot) {
      formError.textContent = [formError.textContent, item.msg].filter(Boolean).join("; ");
      continue;
    }
    slot.textContent = [slot.textContent, item.msg].filter(Boolean).join("; ");
    const input = form.querySelector(`#${id}`);
    input.setAttribute("aria-invalid", "true");
    first = first || input;
  }
  (first || formError).focus?.();
  return true;
}
