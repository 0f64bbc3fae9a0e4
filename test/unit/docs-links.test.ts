import { strict as assert } from "node:assert";
import * as fs from "node:fs";
import * as path from "node:path";
import { packageRoot } from "../../lib/engine/pulumi-cli";

const root = packageRoot();
const docsDir = path.join(root, "docs");
const pages = ["README.md", ...fs.readdirSync(docsDir).filter((f) => f.endsWith(".md")).map((f) => path.join("docs", f))].sort();

/** The Markdown a reader sees as text: fenced code blocks and inline code hold no links or headings. */
function prose(text: string): string {
  return text.replace(/^```[^\n]*\n[\s\S]*?^```[^\n]*$/gm, "").replace(/`[^`\n]*`/g, "code");
}

/** The anchor GitHub gives a heading: lowercase, punctuation dropped (not `-` or `_`), each space a `-`. */
export function slug(heading: string): string {
  const text = heading
    .replace(/\[([^\]]*)\]\([^)]*\)/g, "$1")
    .replace(/`/g, "")
    .trim()
    .toLowerCase();
  return text.replace(/[^\p{L}\p{N}\s_-]/gu, "").replace(/\s/g, "-");
}

/** Every heading's anchor in a Markdown file, repeats numbered `-1`, `-2` as GitHub does. */
function anchorsOf(text: string): Set<string> {
  const seen = new Map<string, number>();
  const anchors = new Set<string>();
  const withoutFences = text.replace(/^```[^\n]*\n[\s\S]*?^```[^\n]*$/gm, "");
  for (const m of withoutFences.matchAll(/^#{1,6}\s+(.+?)\s*#*\s*$/gm)) {
    const base = slug(m[1]);
    const n = seen.get(base) ?? 0;
    seen.set(base, n + 1);
    anchors.add(n === 0 ? base : `${base}-${n}`);
  }
  return anchors;
}

/** The targets of every inline link and image (`[text](target)`, `![alt](target "title")`). */
function linksOf(text: string): string[] {
  return [...prose(text).matchAll(/!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)/g)].map((m) => m[1]);
}

describe("every link in the README and docs/ resolves", () => {
  it("the anchors follow GitHub's rule", () => {
    assert.equal(slug("The deploy machine's own policy"), "the-deploy-machines-own-policy");
    assert.equal(slug("Restores chain: primary → restore → restored primary → restore again"), "restores-chain-primary--restore--restored-primary--restore-again");
    assert.equal(slug("Where an operation's time goes: `STACKPIN_DEBUG=timing`"), "where-an-operations-time-goes-stackpin_debugtiming");
  });

  for (const page of pages) {
    it(`${page}: each relative link reaches a file, and each #anchor a heading in it`, () => {
      const text = fs.readFileSync(path.join(root, page), "utf8");
      const broken: string[] = [];
      for (const target of linksOf(text)) {
        if (/^[a-z][a-z0-9+.-]*:/i.test(target)) continue; // https:, mailto: — not ours to check offline
        const [file, anchor] = target.split("#", 2) as [string, string | undefined];
        const resolved = file ? path.resolve(path.dirname(path.join(root, page)), decodeURIComponent(file)) : path.join(root, page);
        if (!resolved.startsWith(root + path.sep) || !fs.existsSync(resolved)) {
          broken.push(`${target}: no such file`);
          continue;
        }
        if (anchor !== undefined && resolved.endsWith(".md") && !anchorsOf(fs.readFileSync(resolved, "utf8")).has(anchor)) {
          broken.push(`${target}: ${path.relative(root, resolved)} has no heading #${anchor}`);
        }
      }
      assert.deepEqual(broken, [], `${page} has broken links`);
    });
  }

  it("the README links to every page in docs/", () => {
    const linked = new Set(linksOf(fs.readFileSync(path.join(root, "README.md"), "utf8")).map((t) => path.normalize(t.split("#")[0])));
    const unlinked = pages.filter((p) => p !== "README.md" && !linked.has(p));
    assert.deepEqual(unlinked, [], "pages in docs/ the README does not link to");
  });
});
