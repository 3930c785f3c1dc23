"""docs/api.md, generated from the OpenAPI document the app serves (shared/http/openapi.json).

    python -m devtools.api_doc > docs/api.md

A unit test keeps docs/api.md equal to this output, so the page and the document cannot drift:
change the OpenAPI document, then run the command above."""

from __future__ import annotations

import json
import re
import sys
from urllib.parse import urlsplit

from shared.http.openapi import load

SOURCE = "shared/http/openapi.json"
METHODS = ("get", "post", "put", "patch", "delete")
FORMATS = {"uuid": "GUID", "uri": "URL", "date-time": "date-time (ISO 8601, UTC)"}  # how a format reads
SIZES = (("minLength", "maxLength", "characters"), ("minItems", "maxItems", "items"))


def slug(heading: str) -> str:
    """The anchor a Git host gives a heading: lower case, punctuation dropped, spaces as hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def cell(text: object) -> str:
    """Text for a table cell: one line, pipes escaped."""
    return " ".join(str(text).split()).replace("|", "\\|")


def code(value: object) -> str:
    return f"`{value if isinstance(value, str) else json.dumps(value)}`"


def pretty(value: object, indent: int = 0, width: int = 100) -> str:
    """JSON as a reader wants it: a value that fits on its line stays on one line."""
    flat = json.dumps(value, ensure_ascii=False)
    if indent + len(flat) <= width or not isinstance(value, dict | list) or not value:
        return flat
    pad = " " * (indent + 2)
    if isinstance(value, dict):
        items = [f"{pad}{json.dumps(k)}: {pretty(v, indent + 2, width)}" for k, v in value.items()]
        return "{\n" + ",\n".join(items) + "\n" + " " * indent + "}"
    items = [pad + pretty(v, indent + 2, width) for v in value]
    return "[\n" + ",\n".join(items) + "\n" + " " * indent + "]"


class Renderer:
    def __init__(self, document: dict) -> None:
        self.doc = document
        self.schemas: dict = document.get("components", {}).get("schemas", {})
        server = (document.get("servers") or [{"url": ""}])[0]["url"]
        self.prefix = urlsplit(server.replace("{", "").replace("}", "")).path.rstrip("/")
        self.lines: list[str] = []
        self.inline: set[str] = set()  # schemas whose fields a route's section lists (request bodies)

    # ---- helpers -----------------------------------------------------------------------------------

    def out(self, *lines: str) -> None:
        self.lines.extend(lines)

    def ref(self, schema: dict) -> str | None:
        """The component a schema refers to ($ref, or allOf with a single $ref)."""
        if "$ref" in schema:
            return schema["$ref"].rsplit("/", 1)[1]
        parts = schema.get("allOf") or []
        if len(parts) == 1 and "$ref" in parts[0]:
            return parts[0]["$ref"].rsplit("/", 1)[1]
        return None

    def link(self, name: str) -> str:
        return f"[{name}](#{slug(name)})"

    def route(self, path: str, method: str) -> str:
        return f"{method.upper()} {self.prefix}{path}"

    def type_of(self, schema: dict) -> str:
        """How a value reads: a type, a format, an enum, a link to a component; "or null" when nullable."""
        name = self.ref(schema)
        if name is not None:
            text = self.link(name)
        elif "enum" in schema:
            text = "one of " + ", ".join(code(v) for v in schema["enum"])
        elif schema.get("type") == "array":
            text = "array of " + self.type_of(schema.get("items", {}))
        elif schema.get("type") == "object" and isinstance(schema.get("additionalProperties"), dict):
            text = "object: each key → " + self.type_of(schema["additionalProperties"])
        elif "type" in schema:
            text = FORMATS.get(schema.get("format"), schema["type"])
            if schema.get("format") and text == schema["type"]:
                text += f" ({schema['format']})"
        else:
            text = "any JSON"
        return text + (" or null" if schema.get("nullable") else "")

    def rules(self, schema: dict) -> str:
        found = []
        low, high = schema.get("minimum"), schema.get("maximum")
        if low is not None or high is not None:
            above = ("> " if schema.get("exclusiveMinimum") else "≥ ") + str(low) if low is not None else None
            if low is not None and high is not None and not schema.get("exclusiveMinimum"):
                found.append(f"{low} to {high}")
            else:
                found.append(", ".join(t for t in (above, f"≤ {high}" if high is not None else None) if t))
        for smallest, largest, unit in SIZES:
            low, high = schema.get(smallest), schema.get(largest)
            if low is not None and high is not None:
                found.append(f"{low} to {high} {unit}")
            elif low is not None:
                found.append(f"at least {low} {unit[:-1] if low == 1 else unit}")
            elif high is not None:
                found.append(f"at most {high} {unit}")
        if "default" in schema:
            found.append(f"default {code(schema['default'])}")
        if schema.get("uniqueItems"):
            found.append("distinct")
        if "pattern" in schema and schema.get("format") != "uuid":
            found.append(f"pattern {code(schema['pattern'])}")
        if schema.get("minProperties") == schema.get("maxProperties") == 1 and "properties" in schema:
            found.append("exactly one of " + ", ".join(code(k) for k in schema["properties"]))
        return "; ".join(found)

    def describe(self, schema: dict) -> str:
        """A field's description, with its rules."""
        parts = [schema.get("description", "")]
        rules = self.rules(schema)
        if schema.get("type") == "array":
            item_rules = self.rules(schema.get("items", {}))
            rules = "; ".join(r for r in (rules, f"each item: {item_rules}" if item_rules else "") if r)
        if rules:
            parts.append(f"({rules})")
        return cell(" ".join(p for p in parts if p))

    def fields(self, schema: dict, prefix: str = "") -> list[tuple[str, dict, bool]]:
        """(name, schema, required) of an object's fields, inline objects' own fields after them (dotted names)."""
        found = []
        required = set(schema.get("required", ()))
        for name, field in (schema.get("properties") or {}).items():
            dotted = f"{prefix}{name}"
            found.append((dotted, field, name in required))
            if self.ref(field) is None:
                if field.get("properties"):
                    found += self.fields(field, dotted + ".")
                elif field.get("type") == "array" and field.get("items", {}).get("properties") and not self.ref(field["items"]):
                    found += self.fields(field["items"], dotted + "[].")
        return found

    def field_table(self, schema: dict) -> None:
        self.out("| field | type | required | description |", "|---|---|---|---|")
        for name, field, required in self.fields(schema):
            self.out(f"| `{name}` | {cell(self.type_of(field))} | {'yes' if required else ''} | {self.describe(field)} |")
        self.out("")
        for name, field, _ in self.fields(schema):
            meanings = field.get("x-enum-descriptions")
            if meanings:
                self.out(f"`{name}`, one of:", "", "| value | meaning |", "|---|---|")
                self.out(*(f"| `{value}` | {cell(meanings.get(value, ''))} |" for value in field["enum"]))
                self.out("")

    def operations(self) -> list[tuple[str, str, dict]]:
        return [
            (path, method, operation)
            for path, item in self.doc.get("paths", {}).items()
            for method, operation in item.items()
            if method in METHODS
        ]

    def body_schema(self, operation: dict) -> str | None:
        content = (operation.get("requestBody") or {}).get("content") or {}
        return next((self.ref(c.get("schema", {})) for c in content.values()), None)

    def sign_in(self, operation: dict) -> str:
        security = operation.get("security", self.doc.get("security"))
        schemes = [name for requirement in security or [] for name in requirement]
        if not schemes:
            return "anonymous"
        return "one of " + ", ".join(f"`{s}`" for s in schemes) + " (see [Sign-in](#sign-in))"

    # ---- the page ----------------------------------------------------------------------------------

    def render(self) -> str:
        info = self.doc.get("info", {})
        self.out(
            "# HTTP API",
            "",
            f"Generated from [`{SOURCE}`](../{SOURCE}) (OpenAPI {self.doc.get('openapi')}, document version "
            f"{info.get('version')}) by `python -m devtools.api_doc > docs/api.md`; a test keeps the two equal. The app "
            f"serves the same document at `GET {self.prefix}/openapi.json`.",
            "",
            info.get("description", ""),
            "",
        )
        self.servers()
        self.security()
        self.index()
        for path, method, operation in self.operations():
            self.operation(path, method, operation)
        self.components()
        self.error_codes()
        while self.lines and self.lines[-1] == "":
            self.lines.pop()
        return "\n".join(self.lines) + "\n"

    def servers(self) -> None:
        for server in self.doc.get("servers", []):
            url = server["url"]
            for name, variable in (server.get("variables") or {}).items():
                url = url.replace("{" + name + "}", f"<{name}>")
                self.out(f"Base URL: `{url}` (`<{name}>` e.g. `{variable.get('default')}`); every route below is under it.")
        self.out("")

    def security(self) -> None:
        schemes = self.doc.get("components", {}).get("securitySchemes", {})
        if not schemes:
            return
        self.out(
            "## Sign-in",
            "",
            "Each route takes one of these, unless it says anonymous:",
            "",
            "| scheme | how | description |",
            "|---|---|---|",
        )
        for name, scheme in schemes.items():
            if scheme.get("type") == "apiKey":
                how = f"`{scheme['name']}` {scheme['in']} parameter" if scheme["in"] == "query" else f"`{scheme['name']}` header"
            else:
                how = f"`Authorization: {scheme.get('scheme', '').title()} <{scheme.get('bearerFormat', 'token')}>`"
            self.out(f"| `{name}` | {cell(how)} | {cell(scheme.get('description', ''))} |")
        self.out("")

    def index(self) -> None:
        self.out("## Routes", "", "| route | what |", "|---|---|")
        for path, method, operation in self.operations():
            title = f"`{self.route(path, method)}`"
            self.out(f"| [{title}](#{slug(title)}) | {cell(operation.get('summary', ''))} |")
        self.out("")

    def operation(self, path: str, method: str, operation: dict) -> None:
        self.out(f"## `{self.route(path, method)}`", "")
        for key in ("summary", "description"):
            if operation.get(key):
                self.out(operation[key], "")
        self.out(f"Sign-in: {self.sign_in(operation)}.", "")
        parameters = operation.get("parameters", [])
        if parameters:
            self.out("| parameter | in | type | required | description |", "|---|---|---|---|---|")
            for parameter in parameters:
                schema = parameter.get("schema", {})
                rules = self.rules(schema)
                text = " ".join(t for t in (parameter.get("description", ""), f"({rules})" if rules else "") if t)
                self.out(
                    f"| `{parameter['name']}` | {parameter['in']} | {cell(self.type_of(schema))} | "
                    f"{'yes' if parameter.get('required') else ''} | {cell(text)} |"
                )
            self.out("")
        body = operation.get("requestBody")
        if body:
            self.request_body(body)
        self.responses(operation.get("responses", {}))

    def request_body(self, body: dict) -> None:
        for media, content in body.get("content", {}).items():
            schema = content.get("schema", {})
            name = self.ref(schema)
            required = " (required)" if body.get("required") else ""
            shown = self.link(name) if name else self.type_of(schema)
            self.out(f"Body{required}: `{media}`, {shown}." + (f" {body['description']}" if body.get("description") else ""), "")
            if name:
                self.inline.add(name)
                component = self.schemas[name]
                if component.get("description"):
                    self.out(component["description"], "")
                self.field_table(component)
            for key, example in (content.get("examples") or {}).items():
                self.out(f"Example ({example.get('summary', key)}):", "", "```json", pretty(example["value"]), "```", "")

    def responses(self, responses: dict) -> None:
        """Each status, what it means (with the error codes it may carry, as the document lists them) and its body."""
        self.out("| status | meaning | body |", "|---|---|---|")
        for status, response in responses.items():
            meaning = response.get("description", "")
            for header, spec in (response.get("headers") or {}).items():
                meaning += f" Header `{header}`: {spec.get('description', '')}"
            listed = [c for c in response.get("x-error-codes", []) if f"`{c}`" not in meaning]
            if listed:
                meaning += " Error codes: " + ", ".join(f"`{c}`" for c in listed) + "."
            bodies = []
            for media, content in (response.get("content") or {}).items():
                schema = content.get("schema")
                bodies.append(f"`{media}`" + (f" {self.type_of(schema)}" if schema else ""))
            self.out(f"| {status} | {cell(meaning)} | {cell(', '.join(bodies)) or '(none)'} |")
        self.out("")

    def components(self) -> None:
        if not self.schemas:
            return
        self.out("## Schemas", "")
        for name, schema in self.schemas.items():
            self.out(f"### {name}", "")
            if name in self.inline:
                routes = [f"`{self.route(p, m)}`" for p, m, o in self.operations() if self.body_schema(o) == name]
                self.out("The body of " + ", ".join(f"[{r}](#{slug(r)})" for r in routes) + ": its fields are listed there.", "")
                continue
            if schema.get("description"):
                self.out(schema["description"], "")
            if schema.get("properties"):
                self.field_table(schema)
            else:
                self.out(f"Type: {self.type_of(schema)}.", "")

    def error_codes(self) -> None:
        where: dict[str, list[str]] = {}
        for path, method, operation in self.operations():
            for status, response in operation.get("responses", {}).items():
                for error in response.get("x-error-codes", []):
                    where.setdefault(error, []).append(f"`{self.route(path, method)}` {status}")
        self.out(
            "## Error codes",
            "",
            'Every error body is `{"error": {"code": "...", "message": "..."}}`; the message says what was wrong.',
            "",
            "| code | answered by |",
            "|---|---|",
        )
        for error in sorted(where, key=str.lower):
            self.out(f"| `{error}` | {', '.join(where[error])} |")
        self.out("")


def render(document: dict | None = None) -> str:
    return Renderer(load() if document is None else document).render()


def main() -> None:
    sys.stdout.write(render())


if __name__ == "__main__":
    main()
