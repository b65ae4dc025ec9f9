// writ console: the passkey ceremonies. No other script runs on these
// pages, and this one talks only to the console itself.
"use strict";

(function () {
  const csrf = document.body.dataset.csrf || "";

  // After an SSO sign-in: move on as a navigation of this site, so that
  // the browser sends the (SameSite Strict) session cookie.
  const cont = document.getElementById("continue");
  if (cont && cont.dataset.auto === "1") {
    location.replace(cont.getAttribute("href"));
  }

  function toBuf(s) {
    s = s.replace(/-/g, "+").replace(/_/g, "/");
    while (s.length % 4) s += "=";
    const bin = atob(s);
    const out = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
    return out.buffer;
  }

  function toB64url(buf) {
    const bytes = new Uint8Array(buf);
    let bin = "";
    for (let i = 0; i < bytes.length; i++) bin += String.fromCharCode(bytes[i]);
    return btoa(bin).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }

  async function post(url, body) {
    const resp = await fetch(url, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "Accept": "application/json", "X-CSRF-Token": csrf },
      body: JSON.stringify(body),
    });
    let data = {};
    try { data = await resp.json(); } catch (e) { data = { error: "the server answered " + resp.status }; }
    if (!resp.ok) throw new Error(data.error || ("the server answered " + resp.status));
    return data;
  }

  function say(el, text, kind) {
    el.textContent = text;
    el.className = kind;
  }

  // Registration: creation options from the server, the browser's
  // ceremony, the attestation back; the server answers the keyring line.
  const register = document.getElementById("register");
  if (register) {
    const out = document.getElementById("register-result");
    register.addEventListener("click", async function () {
      register.disabled = true;
      say(out, "Follow your browser's prompt…", "muted");
      try {
        const creation = await post("/passkey/options", {});
        const pk = creation.publicKey;
        pk.challenge = toBuf(pk.challenge);
        pk.user.id = toBuf(pk.user.id);
        (pk.excludeCredentials || []).forEach(function (c) { c.id = toBuf(c.id); });
        const cred = await navigator.credentials.create({ publicKey: pk });
        const res = await post("/passkey/register", {
          id: cred.id,
          rawId: toB64url(cred.rawId),
          type: cred.type,
          authenticatorAttachment: cred.authenticatorAttachment || undefined,
          clientExtensionResults: cred.getClientExtensionResults(),
          response: {
            clientDataJSON: toB64url(cred.response.clientDataJSON),
            attestationObject: toB64url(cred.response.attestationObject),
            transports: cred.response.getTransports ? cred.response.getTransports() : [],
          },
        });
        document.getElementById("keyline").textContent = res.line;
        document.getElementById("entry").textContent = res.entry;
        document.getElementById("register-entry").hidden = false;
        say(out, "Passkey registered. " + res.note, "ok");
      } catch (e) {
        say(out, "Not registered: " + e.message, "problem");
      } finally {
        register.disabled = false;
      }
    });
  }

  // Signing: the server proposes the statement; the passkey signs the
  // sha256 of its DSSE PAE (the challenge); the server wraps the
  // assertion into the envelope and the intake judges it.
  const sign = document.getElementById("sign");
  if (sign) {
    const item = sign.dataset.item;
    const creds = (sign.dataset.credentials || "").split(" ").filter(Boolean);
    const out = document.getElementById("sign-result");
    sign.querySelectorAll("button.sign").forEach(function (button) {
      button.addEventListener("click", async function () {
        const decision = button.dataset.decision;
        let reason = "";
        if (decision === "reject") reason = document.getElementById("reason").value;
        if (decision === "break_glass") reason = document.getElementById("bg-reason").value;
        if (decision === "reject" && !reason.trim()) {
          say(out, "Say why you reject it.", "problem");
          return;
        }
        if (decision === "break_glass" && !reason.trim()) {
          say(out, "Say why this cannot wait for approvals.", "problem");
          return;
        }
        sign.querySelectorAll("button").forEach(function (b) { b.disabled = true; });
        say(out, "Follow your browser's prompt…", "muted");
        try {
          const st = await post("/pending/" + encodeURIComponent(item) + "/statement", { decision: decision, reason: reason });
          const allow = (st.allowCredentials || []).map(function (id) { return { type: "public-key", id: toBuf(id) }; });
          const assertion = await navigator.credentials.get({ publicKey: {
            challenge: toBuf(st.challenge), rpId: st.rpId, allowCredentials: allow,
            userVerification: "required", timeout: st.timeout,
          } });
          const res = await post("/pending/" + encodeURIComponent(item) + "/sign", {
            payload: st.payload,
            credentialId: toB64url(assertion.rawId),
            authenticatorData: toB64url(assertion.response.authenticatorData),
            clientDataJSON: toB64url(assertion.response.clientDataJSON),
            signature: toB64url(assertion.response.signature),
          });
          say(out, "Signed: " + st.summary + ". " + (res.message || ""), "ok");
        } catch (e) {
          say(out, "Not signed: " + e.message, "problem");
        } finally {
          sign.querySelectorAll("button").forEach(function (b) { b.disabled = false; });
        }
      });
    });
  }
}());
