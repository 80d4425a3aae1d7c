// Small DOM helpers shared by the pages (one place: the console's panels and the call screen).

/** An element with attributes (`text` sets its text; false / null attributes are left out). */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === false || value == null) continue;
    if (name === "text") node.textContent = value;
    else node.setAttribute(name, value === true ? "" : value);
  }
  node.append(...children);
  return node;
}

/** The element with this id. */
export const byId = (id) => document.getElementById(id);

/** m:ss of a number of seconds (never negative). */
export function mmss(seconds) {
  const v = Math.max(0, Math.round(seconds));
  const m = Math.floor(v / 60);
  return `${m}:${String(v % 60).padStart(2, "0")}`;
}
