// The GraphQL client: every operation goes by its persisted hash (the manifest codegen
// writes, which Caregraph runs in `trusted` mode), queries and mutations by POST,
// subscriptions over graphql-ws. A new client (and so an empty cache) per sign-in: signing
// out drops every cached PHI with the old one.
import { Client, cacheExchange, fetchExchange, subscriptionExchange } from '@urql/core';
import type { CombinedError, Operation } from '@urql/core';
import { authExchange } from '@urql/exchange-auth';
import { persistedExchange } from '@urql/exchange-persisted';
import { createClient as createWsClient } from 'graphql-ws';
import type { Client as WsClient } from 'graphql-ws';
import { graphql } from './gql';
import { session } from './session';

const SIGN_IN_OPERATIONS = new Set(['Login', 'VerifyMfa']);

function isAuthError(error: CombinedError) {
  return error.graphQLErrors.some((e) => e.extensions?.code === 'UNAUTHENTICATED');
}

const KeepAlive = graphql(`
  query KeepAlive {
    me {
      id
    }
  }
`);

export type Portal = { client: Client; dispose: () => void };

/** `signedIn` only keys the client: one per signed-in (or signed-out) stretch. */
export function makeClient(_signedIn: boolean): Portal {
  // The socket client is made on first use and again after `dispose` (React's StrictMode
  // disposes and re-mounts in development): a disposed graphql-ws client never reconnects.
  let ws: WsClient | null = null;
  let connectedBefore = false;
  const socket = () =>
    (ws ??= createWsClient({
      url: `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/graphql/ws`,
      lazy: true,
      // A fresh token for each connection: the server closes a socket (4403) when the token
      // it was opened with expires; the retry opens the next with the refreshed one.
      connectionParams: async () => {
        if (session.expiresSoon) await session.refresh();
        return { authorization: `Bearer ${session.token ?? ''}` };
      },
      retryAttempts: 8,
      shouldRetry: () => session.signedIn,
      on: {
        // Back after a drop: what happened in between was not delivered, so screens read
        // their data again.
        connected: () => {
          if (connectedBefore) session.liveReconnected();
          connectedBefore = true;
        },
      },
    }));

  const client = new Client({
    url: '/graphql',
    requestPolicy: 'cache-and-network',
    // same-origin: the sign-in response sets the refresh cookie.
    fetchOptions: { credentials: 'same-origin', headers: { accept: 'application/graphql-response+json' } },
    // Every answer from the API slid the server's idle window.
    fetch: async (input, init) => {
      const res = await fetch(input, init);
      if (res.ok) session.touched();
      return res;
    },
    exchanges: [
      cacheExchange,
      authExchange(async (utils) => ({
        addAuthToOperation(operation: Operation) {
          const token = session.token;
          return token ? utils.appendHeaders(operation, { Authorization: `Bearer ${token}` }) : operation;
        },
        didAuthError(error: CombinedError, operation: Operation) {
          const name = operation.query.definitions.find((d) => d.kind === 'OperationDefinition');
          const op = name && 'name' in name ? name.name?.value : undefined;
          return session.signedIn && !SIGN_IN_OPERATIONS.has(op ?? '') && isAuthError(error);
        },
        willAuthError() {
          return session.signedIn && session.expiresSoon;
        },
        async refreshAuth() {
          await session.refresh();
        },
      })),
      persistedExchange({
        enforcePersistedQueries: true,
        // POST for everything: variables (a family name, a birth date) never land in URLs
        // and proxy logs, and answers carrying PHI are `no-store`, so GET would cache nothing.
        preferGetForPersistedQueries: false,
        enableForMutation: true,
        enableForSubscriptions: true,
        generateHash: async (_query, document) =>
          // APQ names a document by its bare hex SHA-256; codegen writes `sha256:<hex>`.
          ((document as unknown as { __meta__?: { hash: string } }).__meta__?.hash ?? '').replace(/^sha256:/, ''),
      }),
      fetchExchange,
      subscriptionExchange({
        enableAllOperations: false,
        forwardSubscription(request) {
          return {
            subscribe(sink) {
              const dispose = socket().subscribe(
                { ...request, query: request.query ?? '' },
                sink as Parameters<WsClient['subscribe']>[1],
              );
              return { unsubscribe: dispose };
            },
          };
        },
      }),
    ],
  });
  session.setKeepAlive(() => client.query(KeepAlive, {}, { requestPolicy: 'network-only' }).toPromise());
  return {
    client,
    dispose: () => {
      // Disposed while a reconnect waits, graphql-ws rejects with a plain close record
      // ({ code: 1000, reason: 'All Subscriptions Gone' }): there is no socket left to close.
      if (ws) Promise.resolve(ws.dispose()).catch(() => {});
      ws = null;
      connectedBefore = false;
    },
  };
}
