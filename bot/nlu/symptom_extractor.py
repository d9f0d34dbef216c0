"""`SymptomExtractor`: a Rasa graph component that runs the triage core on each message.

It adds one `symptom` entity per counted catalogue term (value: the term; start/end: the patient's
words), puts the triage object on the message (`triage`, kept in the tracker's parse data), and, when
the core finds a side effect or an unclear complaint, sets the intent to `report_symptom`: the triage
core, not a statistical classifier, decides whether a message is a symptom report.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from rasa.engine.graph import ExecutionContext, GraphComponent
from rasa.engine.recipes.default_recipe import DefaultV1Recipe
from rasa.engine.storage.resource import Resource
from rasa.engine.storage.storage import ModelStorage
from rasa.nlu.extractors.extractor import EntityExtractorMixin
from rasa.shared.nlu.constants import ENTITIES, INTENT, INTENT_RANKING_KEY, TEXT
from rasa.shared.nlu.training_data.message import Message
from rasa.shared.nlu.training_data.training_data import TrainingData

from bot.triage import Level, Triage, default_triager
from bot.triage.context import ASKED
from bot.triage.knowledge import knowledge_dir

ENTITY = "symptom"
TRIAGE = "triage"
SYMPTOM_INTENT = "report_symptom"
CLASSIFIER_RANKING = "classifier_intent_ranking"
_CORE = Path(__file__).resolve().parents[1] / "triage"


@DefaultV1Recipe.register([DefaultV1Recipe.ComponentType.ENTITY_EXTRACTOR], is_trainable=False)
class SymptomExtractor(GraphComponent, EntityExtractorMixin):
    """Maps each message to the side-effect catalogue with the triage core."""

    @staticmethod
    def get_default_config() -> dict[str, Any]:
        return {"symptom_intent": SYMPTOM_INTENT}

    def __init__(self, config: dict[str, Any]) -> None:
        self._intent = str(config.get("symptom_intent", SYMPTOM_INTENT))
        self._triager = default_triager()
        # The Spanish reader is built now, not at the first Spanish message: that patient must not wait for it.
        self._triager.spanish_triager()

    @classmethod
    def create(
        cls,
        config: dict[str, Any],
        model_storage: ModelStorage,
        resource: Resource,
        execution_context: ExecutionContext,
    ) -> SymptomExtractor:
        return cls(config)

    @classmethod
    def fingerprint_addon(cls, config: dict[str, Any]) -> str | None:
        """Rasa's cache sees only this component's config; the catalogue, the cue files and the core's
        code decide its output, so a change to any of them retrains the model."""
        digest = hashlib.sha256()
        files = sorted(path for path in knowledge_dir().rglob("*") if path.is_file())
        files += sorted(_CORE.glob("*.py"))
        for path in files:
            digest.update(path.name.encode())
            digest.update(path.read_bytes())
        return digest.hexdigest()

    def process_training_data(self, training_data: TrainingData) -> TrainingData:
        return training_data

    def process(self, messages: list[Message]) -> list[Message]:
        for message in messages:
            text = message.get(TEXT)
            if not isinstance(text, str):
                continue
            triage = self._triager.triage(text)
            entities = self.add_extractor_name(_entities(triage))
            message.set(ENTITIES, message.get(ENTITIES, []) + entities, add_to_output=True)
            message.set(TRIAGE, triage.to_dict(), add_to_output=True)
            asked = any(set(symptom.context) & ASKED for symptom in triage.excluded)
            if triage.level != Level.NONE or asked:
                # A question about a side effect is answered by the triage action from the medicine guide.
                self._mark_as_symptom_report(message)
        return messages

    def _mark_as_symptom_report(self, message: Message) -> None:
        """The ranking is replaced too: FallbackClassifier falls back when the top two intents are close,
        so a classifier's confident "greet" left beside it would turn a seizure into "I did not
        understand". The classifier's own ranking is kept under `classifier_intent_ranking`."""
        ranking = message.get(INTENT_RANKING_KEY) or []
        intent = {"name": self._intent, "confidence": 1.0}
        message.set(CLASSIFIER_RANKING, ranking, add_to_output=True)
        message.set(INTENT, intent, add_to_output=True)
        message.set(INTENT_RANKING_KEY, [intent], add_to_output=True)


def _entities(triage: Triage) -> list[dict[str, Any]]:
    return [
        {
            "entity": ENTITY,
            "value": symptom.term,
            "start": symptom.start,
            "end": symptom.end,
            "confidence": symptom.score,
            "text": symptom.span,
        }
        for symptom in triage.symptoms
    ]
