import { strict as assert } from "node:assert";
import { localConfigSchema } from "../../programs/local/schema";
import { databaseConnection, plainPasswordWarnings, splitDatabaseUrl, urlHasPassword, urlWithPassword } from "../../lib/planning/database-url";
import { diffConfig, maskedSecret } from "../../lib/versions/config-diff";
import { maskUrlPasswords, redact, redactedMark } from "../../lib/verify/redact";

describe("a database URL and its password, kept apart", () => {
  it("takes the password out of a URL, percent-decoded, and keeps the user, host, port and database", () => {
    assert.deepEqual(splitDatabaseUrl("postgres://app:p%40ss%3Aw%2Frd@127.0.0.1:5432/shop"), { url: "postgres://app@127.0.0.1:5432/shop", password: "p@ss:w/rd" });
    assert.deepEqual(splitDatabaseUrl("postgres://app@127.0.0.1:5432/shop"), { url: "postgres://app@127.0.0.1:5432/shop" });
    assert.deepEqual(splitDatabaseUrl("not a url"), { url: "not a url" });
    assert.equal(urlHasPassword("postgresql://u:x@h/d"), true);
    assert.equal(urlHasPassword("postgresql://u@h/d"), false);
  });

  it("puts a password back into a URL percent-encoded, so a driver reads it as it was", () => {
    const password = "a:b@c/d%e f\\g";
    const url = urlWithPassword("postgres://app@127.0.0.1:5432/shop", password);
    assert.equal(splitDatabaseUrl(url).password, password);
    assert.equal(urlWithPassword("postgres://app@h/d", undefined), "postgres://app@h/d");
  });

  it("gives the connection of a database config: the password field, or the URL's, never both", () => {
    assert.deepEqual(databaseConnection({ url: "postgres://app@h:1/d", password: "s3cret" }), { url: "postgres://app@h:1/d", password: "s3cret" });
    assert.deepEqual(databaseConnection({ url: "postgres://app:s3cret@h:1/d" }), { url: "postgres://app@h:1/d", password: "s3cret" });
    assert.throws(() => databaseConnection({ url: "postgres://app:one@h:1/d", password: "two" }), /given twice/);
  });

  it("warns of a plain password in database.url, in either file, without repeating it", () => {
    const warnings = plainPasswordWarnings({ "shop:database": { url: "postgres://app:hunter22@h/d" }, message: "x" }, "shop");
    assert.equal(warnings.length, 1);
    assert.match(warnings[0], /config\.shop:database\.url carries a password in plain text/);
    assert.ok(!warnings[0].includes("hunter22"));
    assert.deepEqual(plainPasswordWarnings({ database: { url: "postgres://app@h/d", password: { secure: "v1:x" } } }, "shop"), []);
  });
});

describe("a password in a URL's user info is masked in what is shown", () => {
  it("masks the password, keeps the user and the rest", () => {
    assert.equal(maskUrlPasswords("cannot connect to postgres://app:hunter22@127.0.0.1:5432/shop: refused"), `cannot connect to postgres://app:${redactedMark}@127.0.0.1:5432/shop: refused`);
    assert.equal(maskUrlPasswords("see http://127.0.0.1:8080/health and postgres://app@h/d"), "see http://127.0.0.1:8080/health and postgres://app@h/d");
    assert.equal(redact("DATABASE_URL=postgresql://u:p4ss@db:5432/x", [], 1000), `DATABASE_URL=postgresql://u:${redactedMark}@db:5432/x`);
  });

  it("config diffs mask a URL's password and a secret inside structured config", () => {
    const changes = diffConfig(
      { database: { url: "postgres://app:old-pw@h/d", archiveDir: "/a" } },
      { database: { url: "postgres://app@h/d", password: { secure: "v1:cipher" }, archiveDir: "/a" } },
    );
    assert.deepEqual(changes, [
      { key: "database.url", kind: "changed", secret: false, before: `postgres://app:${redactedMark}@h/d`, after: "postgres://app@h/d" },
      { key: "database.password", kind: "added", secret: true, after: maskedSecret },
    ]);
    const rotated = diffConfig({ database: { password: { secure: "v1:a" } } }, { database: { password: { secure: "v1:b" } } });
    assert.deepEqual(rotated, [{ key: "database.password", kind: "changed", secret: true, before: maskedSecret, after: maskedSecret }]);
    const added = diffConfig({}, { database: { url: "postgres://app:pw9@h/d", password: { secure: "v1:c" } } });
    assert.ok(!JSON.stringify(added).includes("v1:c") && !JSON.stringify(added).includes("pw9"), JSON.stringify(added));
  });
});

describe("the local target's database config", () => {
  const database = { archiveDir: "/var/wal", pgBin: "/usr/lib/postgresql/15/bin" };
  const check = (db: Record<string, unknown>) => localConfigSchema.safeParse({ message: "m", database: { ...database, ...db } });

  it("takes a secure password beside a URL without one, a secure URL, or a plain URL", () => {
    assert.ok(check({ url: "postgres://app@h:5432/shop", password: { secure: "v1:x" } }).success);
    assert.ok(check({ url: { secure: "v1:x" } }).success);
    assert.ok(check({ url: "postgres://app:pw@h:5432/shop" }).success);
  });

  it("refuses a plain-text password, and a password given twice", () => {
    const plain = check({ url: "postgres://app@h/shop", password: "hunter22" });
    assert.ok(!plain.success);
    assert.match(plain.error.issues.map((i) => i.message).join("\n"), /plain-text password is not allowed/);
    const twice = check({ url: "postgres://app:pw@h/shop", password: { secure: "v1:x" } });
    assert.ok(!twice.success);
    assert.match(twice.error.issues.map((i) => i.message).join("\n"), /given twice/);
  });
});
