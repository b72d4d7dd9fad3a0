// JSON to YAML for display (what `meshctl get -o yaml` prints), without a library.

// Plain (unquoted) only when no YAML reader could take it for another type: booleans, null,
// numbers and dates are quoted.
const PLAIN = /^[A-Za-z0-9_./][A-Za-z0-9_./ -]*$/;
const RESERVED =
  /^(true|false|null|yes|no|on|off|y|n|~|[-+]?[0-9._]*[0-9][0-9._eE+-]*|\.(inf|nan)|[0-9]{4}-[0-9]{2}-[0-9]{2}.*)$/i;

function scalar(value) {
  if (value === null || value === undefined) return "null";
  if (typeof value === "number" || typeof value === "boolean") return String(value);
  const s = String(value);
  if (s !== "" && PLAIN.test(s) && !RESERVED.test(s) && s.trim() === s && !s.includes(": ")) {
    return s;
  }
  return JSON.stringify(s);
}

function isEmpty(value) {
  return Array.isArray(value) ? value.length === 0 : Object.keys(value).length === 0;
}

function lines(value, indent) {
  const pad = "  ".repeat(indent);
  if (Array.isArray(value)) {
    return value.flatMap((item) => {
      if (item !== null && typeof item === "object" && !isEmpty(item)) {
        const [first, ...rest] = lines(item, indent + 1);
        return [`${pad}- ${first.trimStart()}`, ...rest];
      }
      return [`${pad}- ${inline(item)}`];
    });
  }
  return Object.entries(value).flatMap(([key, item]) => {
    const k = scalar(key);
    if (item !== null && typeof item === "object" && !isEmpty(item)) {
      return [`${pad}${k}:`, ...lines(item, Array.isArray(item) ? indent : indent + 1)];
    }
    return [`${pad}${k}: ${inline(item)}`];
  });
}

function inline(value) {
  if (Array.isArray(value)) return "[]";
  if (value !== null && typeof value === "object") return "{}";
  return scalar(value);
}

export function toYaml(value) {
  if (value === null || typeof value !== "object") return `${scalar(value)}\n`;
  return `${lines(value, 0).join("\n")}\n`;
}
