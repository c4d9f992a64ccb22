# syntax=docker/dockerfile:1
# Build: compile TypeScript and better-sqlite3's native addon, then keep production dependencies only.
FROM node:24-bookworm-slim AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 make g++ \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN npm run build && npm prune --omit=dev

# Run: no compilers, no dev dependencies, not root.
FROM node:24-bookworm-slim
ENV NODE_ENV=production \
    PORT=3000 \
    DATABASE_URL=sqlite:/data/postmortem-bot.db
WORKDIR /app
COPY --from=build /app/package.json ./
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
RUN mkdir -p /data && chown node:node /data
USER node
VOLUME ["/data"]
EXPOSE 3000
HEALTHCHECK --interval=30s --timeout=3s --start-period=15s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:'+(process.env.PORT||3000)+'/healthz').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]
# SIGTERM triggers a graceful shutdown: stop intake, finish in-flight work, close the store.
# Live data is small (state lives in SQLite); the heap cap leaves room for the largest burst the bot
# accepts (48 bodies of ~1 MiB at once peak near 105 MB of live heap: see README, Heap cap).
CMD ["node", "--max-old-space-size=256", "--max-semi-space-size=4", "dist/main.js"]
