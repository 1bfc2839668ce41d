// What an automated look can tell about a page's accessibility: every control has a name a screen
// reader says, and every visible text is readable against what is behind it (WCAG AA: 4.5:1, 3:1
// for large text). Returns the problems found, as readable strings.
() => {
  const problems = [];
  const visible = (el) => {
    const r = el.getBoundingClientRect(), s = getComputedStyle(el);
    return r.width > 0 && r.height > 0 && s.visibility !== "hidden" && s.display !== "none" && !el.closest(".leaflet-container .leaflet-pane");
  };
  for (const el of document.querySelectorAll("button, input, select, textarea, a[href], [tabindex]")) {
    if (!visible(el) || el.type === "hidden") continue;
    const name = (el.getAttribute("aria-label") || (el.labels && el.labels[0] && el.labels[0].textContent)
      || el.getAttribute("aria-labelledby") && document.getElementById(el.getAttribute("aria-labelledby"))?.textContent
      || el.title || el.textContent || "").trim();
    if (!name) problems.push(`no accessible name: <${el.tagName.toLowerCase()} id="${el.id}" class="${el.className}">`);
  }
  const rgb = (c) => (c.match(/[\d.]+/g) || []).map(Number);
  const lum = ([r, g, b]) => {
    const f = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; };
    return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b);
  };
  const background = (el) => {
    for (let e = el; e; e = e.parentElement) {
      const c = rgb(getComputedStyle(e).backgroundColor);
      if (c.length === 3 || (c.length === 4 && c[3] > 0.9)) return c.slice(0, 3);
      if (c.length === 4 && c[3] > 0) return null;  // translucent: cannot tell without the pixels
    }
    return [255, 255, 255];
  };
  for (const el of document.querySelectorAll("body *")) {
    if (!visible(el) || el.closest(".leaflet-container") || el.closest("[aria-disabled=true]") || el.disabled) continue;
    const own = [...el.childNodes].some((n) => n.nodeType === 3 && n.textContent.trim());
    if (!own) continue;
    const s = getComputedStyle(el), bg = background(el);
    if (!bg) continue;
    const fg = rgb(s.color).slice(0, 3);
    const [a, b] = [lum(fg) + 0.05, lum(bg) + 0.05];
    const ratio = Math.max(a, b) / Math.min(a, b);
    const size = parseFloat(s.fontSize), bold = Number(s.fontWeight) >= 700;
    const need = size >= 24 || (bold && size >= 18.66) ? 3 : 4.5;
    if (ratio < need) problems.push(`contrast ${ratio.toFixed(2)} < ${need}: "${el.textContent.trim().slice(0, 40)}" (${s.color} on rgb(${bg}))`);
  }
  return problems;
}
