import { chatEndpoint } from './chat-endpoint.js';
import { completionsEndpoint } from './completions-endpoint.js';
import type { Endpoint } from './endpoint.js';
import { embeddingsEndpoint } from './embeddings-endpoint.js';
import { messagesEndpoint } from './messages-endpoint.js';
import { responsesEndpoint } from './responses-endpoint.js';

/** Every metered endpoint, each served under /v1 and /api/v1. Nothing else is forwarded. */
export const ENDPOINTS: readonly Endpoint[] = [chatEndpoint, responsesEndpoint, messagesEndpoint, completionsEndpoint, embeddingsEndpoint];
