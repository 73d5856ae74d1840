// Secure messages: the inbox with unread counts, a thread with live new messages, replies,
// and a new thread (patients). Live updates carry ids only; each one makes the screen read
// the thread again through the same access decision as any read.
import { useEffect, useRef, useState } from 'react';
import { useMutation, useQuery, useSubscription } from 'urql';
import { problem } from '../errors';
import { graphql } from '../gql';
import type { Viewer } from '../App';
import { Link, Loading, ProblemNote, Screen, navigate, newKey, useLiveRefetch, when } from '../ui';

const Inbox = graphql(`
  query Inbox {
    inbox(first: 20) {
      totalCount
      edges {
        node {
          id
          subject
          lastMessageAt
          unreadCount
          participants {
            id
            displayName
            role
          }
        }
      }
    }
  }
`);

const Thread = graphql(`
  query Thread($id: ID!) {
    thread(id: $id) {
      id
      subject
      patientId
      unreadCount
      participants {
        id
        displayName
        role
      }
      messages(first: 50) {
        edges {
          node {
            id
            body
            sentAt
            retracted
            sender {
              id
              displayName
              role
            }
          }
        }
      }
    }
  }
`);

const MessageArrived = graphql(`
  subscription MessageArrived($threadId: ID) {
    messageReceived(threadId: $threadId) {
      id
      threadId
    }
  }
`);

const Send = graphql(`
  mutation SendMessage($threadId: ID!, $body: String!, $key: String) {
    sendMessage(threadId: $threadId, body: $body, idempotencyKey: $key) {
      id
      sentAt
    }
  }
`);

const MarkRead = graphql(`
  mutation MarkRead($threadId: ID!, $upTo: ID!) {
    markThreadRead(threadId: $threadId, upTo: $upTo) {
      id
      unreadCount
    }
  }
`);

const StartThread = graphql(`
  mutation StartThread($patientId: ID!, $subject: String!, $body: String!, $key: String) {
    startThread(patientId: $patientId, subject: $subject, body: $body, idempotencyKey: $key) {
      id
    }
  }
`);

export function Messages({ me, threadId }: { me: Viewer; threadId?: string }) {
  return threadId ? <ThreadView me={me} threadId={threadId} /> : <InboxView me={me} />;
}

function InboxView({ me }: { me: Viewer }) {
  const [{ data, error, fetching }, refetch] = useQuery({ query: Inbox });
  const [live] = useSubscription({ query: MessageArrived, variables: {} });
  useLiveRefetch(live.data, refetch);
  return (
    <Screen title="Messages">
      <ProblemNote problem={problem(error)} />
      {!data ? (
        fetching && <Loading what="your messages" />
      ) : data.inbox.edges.length === 0 ? (
        <p>No conversations yet.</p>
      ) : (
        <ul className="rows" aria-label="Conversations">
          {data.inbox.edges.map(({ node: t }) => (
            <li key={t.id}>
              <Link to={`messages/${t.id}`}>{t.subject}</Link>
              {t.unreadCount > 0 && <span className="badge">{t.unreadCount} unread</span>}
              <br />
              <span className="muted">
                {t.participants.map((x) => x.displayName).join(', ')} · last message {when(t.lastMessageAt)}
              </span>
            </li>
          ))}
        </ul>
      )}
      {me.role === 'PATIENT' && me.patientId && <NewThread patientId={me.patientId} />}
    </Screen>
  );
}

function NewThread({ patientId }: { patientId: string }) {
  const [subject, setSubject] = useState('');
  const [body, setBody] = useState('');
  const [key] = useState(newKey);
  const [started, start] = useMutation(StartThread);
  return (
    <section aria-labelledby="h-new">
      <h2 id="h-new">Write to your care team</h2>
      <form
        aria-labelledby="h-new"
        onSubmit={async (e) => {
          e.preventDefault();
          const r = await start({ patientId, subject, body, key });
          if (r.data) navigate(`messages/${r.data.startThread.id}`);
        }}
      >
        <label htmlFor="subject">Subject</label>
        <input id="subject" required maxLength={200} value={subject} onChange={(e) => setSubject(e.target.value)} />
        <label htmlFor="first-message">Message</label>
        <textarea id="first-message" required rows={4} value={body} onChange={(e) => setBody(e.target.value)} />
        <ProblemNote problem={problem(started.error)} />
        <button type="submit" disabled={started.fetching}>
          Send message
        </button>
      </form>
    </section>
  );
}

function ThreadView({ me, threadId }: { me: Viewer; threadId: string }) {
  const [{ data, error, fetching }, refetch] = useQuery({ query: Thread, variables: { id: threadId } });
  const [live] = useSubscription({ query: MessageArrived, variables: { threadId } });
  useLiveRefetch(live.data, refetch);
  const [, markRead] = useMutation(MarkRead);
  const [body, setBody] = useState('');
  const [key, setKey] = useState(newKey);
  const [sent, send] = useMutation(Send);
  const t = data?.thread;
  const messages = t?.messages.edges.map((e) => e.node) ?? [];
  const last = messages[messages.length - 1];
  const marked = useRef<string | null>(null);
  useEffect(() => {
    if (last && t && t.unreadCount > 0 && marked.current !== last.id) {
      marked.current = last.id;
      void markRead({ threadId, upTo: last.id });
    }
  }, [last, t, threadId, markRead]);

  if (!t) {
    return (
      <Screen title="Conversation" docTitle="Conversation">
        {fetching ? <Loading what="the conversation" /> : <ProblemNote problem={problem(error)} />}
        <Link to="messages">Back to messages</Link>
      </Screen>
    );
  }
  return (
    <Screen title={t.subject} docTitle="Conversation">
      <p>
        <Link to="messages">Back to messages</Link>
      </p>
      <p className="muted">With {t.participants.filter((x) => x.id !== me.id).map((x) => x.displayName).join(', ')}</p>
      <ol className="thread" aria-label="Messages in this conversation" aria-live="polite">
        {messages.map((m) => (
          <li key={m.id} className={m.sender.id === me.id ? 'mine' : ''}>
            <p className="muted">
              {m.sender.displayName} · {when(m.sentAt)}
            </p>
            <p>{m.retracted ? <em>This message was retracted.</em> : m.body}</p>
          </li>
        ))}
      </ol>
      <form
        aria-label="Reply"
        onSubmit={async (e) => {
          e.preventDefault();
          const r = await send({ threadId, body, key });
          if (r.data) {
            setBody('');
            setKey(newKey());
            refetch({ requestPolicy: 'network-only' });
          }
        }}
      >
        <label htmlFor="reply">Your reply</label>
        <textarea id="reply" required rows={3} value={body} onChange={(e) => setBody(e.target.value)} />
        <ProblemNote problem={problem(sent.error)} />
        <button type="submit" disabled={sent.fetching}>
          Send reply
        </button>
      </form>
    </Screen>
  );
}
