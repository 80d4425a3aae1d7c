// Page translations: Russian by default, English switchable, the choice kept in
// localStorage 'telemed.lang'. Elements opt in with data-i18n (text), data-i18n-label
// (aria-label) and data-i18n-placeholder; each page passes its own dictionaries.

const STORAGE_KEY = "telemed.lang";
const DEFAULT_LANG = "ru";

/** Sets up translations for a page and applies them to the document now and on every switch. */
export function setupI18n(dictionaries) {
  const hooks = new Set();
  let lang = pick();

  function pick() {
    const asked = new URLSearchParams(location.search).get("lang") || localStorage.getItem(STORAGE_KEY);
    return asked && asked in dictionaries ? asked : DEFAULT_LANG;
  }

  function lookup(dict, key) {
    // A flat key first ("call.mute", as merged from CALL_STRINGS), then a nested path.
    if (dict && typeof dict[key] === "string") return dict[key];
    return key.split(".").reduce((node, part) => (node && typeof node === "object" ? node[part] : undefined), dict);
  }

  function t(key, vars = {}) {
    let text = lookup(dictionaries[lang], key);
    if (typeof text !== "string") text = lookup(dictionaries[DEFAULT_LANG], key);
    if (typeof text !== "string") return key;
    return text.replace(/\{(\w+)\}/g, (whole, name) => (name in vars ? String(vars[name]) : whole));
  }

  function apply(root = document) {
    document.documentElement.lang = lang;
    for (const node of root.querySelectorAll("[data-i18n]")) node.textContent = t(node.dataset.i18n);
    for (const node of root.querySelectorAll("[data-i18n-label]")) node.setAttribute("aria-label", t(node.dataset.i18nLabel));
    for (const node of root.querySelectorAll("[data-i18n-placeholder]")) node.setAttribute("placeholder", t(node.dataset.i18nPlaceholder));
    for (const node of root.querySelectorAll("[data-i18n-title]")) node.setAttribute("title", t(node.dataset.i18nTitle));
  }

  const i18n = {
    t,
    get lang() {
      return lang;
    },
    /** Switches the language, remembers it, re-applies the document and calls the onChange hooks. */
    setLang(next) {
      if (!(next in dictionaries)) return;
      lang = next;
      localStorage.setItem(STORAGE_KEY, next);
      apply();
      for (const fn of hooks) fn(next);
    },
    /** Re-applies translations under root (after a page renders new data-i18n nodes). */
    apply,
    /** Calls fn(lang) after every switch, so pages can re-render text they built themselves. */
    onChange(fn) {
      hooks.add(fn);
      return () => hooks.delete(fn);
    },
  };
  apply();
  return i18n;
}
