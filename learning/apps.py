from django.apps import AppConfig


class LearningConfig(AppConfig):
    name = "learning"
    verbose_name = "Learning"

    def ready(self) -> None:
        from django.db.models.signals import post_migrate, post_save

        from chat.models import Message
        from learning import schedule, signals

        post_save.connect(signals.message_saved, sender=Message, dispatch_uid="learning.log_turn")
        post_migrate.connect(schedule.ensure_schedule, sender=self, dispatch_uid="learning.schedule")
