// The comparison server of `cargo xtask bench`: Express + express-session + connect-mongo,
// configured like the Rust examples (CONTRACT.md): cookie `sid`, TTL, TOUCH_AFTER_SECS,
// PAYLOAD_BYTES of padding on creation. Only the routes the benchmark uses.
'use strict';

const express = require('express');
const session = require('express-session');
const { MongoStore } = require('connect-mongo');

const env = (name, fallback) => process.env[name] ?? fallback;
const ttl = Number(env('SESSION_TTL_SECS', '1209600'));
const touchAfter = Number(env('TOUCH_AFTER_SECS', '0'));
const padding = 'x'.repeat(Number(env('PAYLOAD_BYTES', '0')));

const app = express();
app.disable('x-powered-by');
app.get('/health', (_req, res) => res.json({ ok: true }));
app.use(
  session({
    name: 'sid',
    secret: 'bench-only-secret',
    resave: false,
    saveUninitialized: false,
    cookie: { httpOnly: true, sameSite: 'lax', maxAge: ttl * 1000 },
    store: MongoStore.create({
      mongoUrl: env('MONGODB_URI', 'mongodb://127.0.0.1:27017/sessions_demo'),
      collectionName: env('MONGO_COLLECTION', 'sessions'),
      ttl,
      touchAfter,
      autoRemove: 'native',
    }),
  }),
);
app.get('/counter', (req, res) => {
  if (req.session.count === undefined && padding) req.session.padding = padding;
  req.session.count = (req.session.count ?? 0) + 1;
  res.json({ count: req.session.count });
});
app.get('/peek', (req, res) => res.json({ count: req.session.count ?? 0 }));

const host = env('HOST', '127.0.0.1');
const port = Number(env('PORT', '3000'));
app.listen(port, host, () => console.log(`listening on http://${host}:${port}`));
